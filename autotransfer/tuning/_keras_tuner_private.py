"""The only KerasTuner internals autotransfer relies on (KerasTuner 1.4), in one place.

KerasTuner's public API has no hook for "the first trial takes the defaults" and no way to serve
an oracle (or reach a worker's client) with our own gRPC interceptors, so these stay private.
``tests/tuning/test_keras_tuner_private.py`` pins each behaviour relied on, so that a KerasTuner
release that changes one fails there, by name, rather than deep inside a search.

* :class:`FirstValuesHook`: the oracles draw a trial's values with ``Oracle._random_values()``
  (Random search for every trial, Bayesian optimisation for its initial points, Hyperband for
  each bracket's first round); the hook returns :meth:`first_values` instead when they are new.
* :func:`oracle_servicer`, :func:`add_oracle_servicer`, :func:`chief_may_exit`: what KerasTuner's
  chief does in ``search`` (``keras_tuner.src.distribute.oracle_chief``), done with our server.
* :func:`oracle_stub`, :func:`is_oracle_client`: a worker's gRPC stub of the chief's oracle
  (``OracleClient.stub``), replaced by one whose calls carry the token.
"""

from __future__ import annotations

from typing import Any


class FirstValuesHook:
    """Mixin for a KerasTuner oracle: values from :meth:`first_values` while they are new."""

    def first_values(self) -> dict[str, Any] | None:
        """The values to try before random ones (``None``: none)."""
        return None

    def _random_values(self) -> dict[str, Any] | None:
        first = self.first_values()
        if first is not None and not self._duplicate(first):  # type: ignore[attr-defined]
            return first
        return super()._random_values()  # type: ignore[misc]


def oracle_servicer(oracle: Any) -> Any:
    """KerasTuner's gRPC servicer of ``oracle`` (its ``stop_triggered`` ends the chief)."""
    from keras_tuner.src.distribute import oracle_chief

    return oracle_chief.OracleServicer(oracle)


def add_oracle_servicer(servicer: Any, server: Any) -> None:
    """Register ``servicer`` on the gRPC ``server``."""
    from keras_tuner.src import protos

    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)


def chief_may_exit(oracle: Any) -> bool:
    """Whether no trial is running any more, so that the chief may stop serving."""
    from keras_tuner.src.distribute import oracle_chief

    return bool(oracle_chief.exit_chief(oracle))


def oracle_stub(channel: Any) -> Any:
    """A gRPC stub of the chief's oracle on ``channel``."""
    from keras_tuner.src import protos

    return protos.get_service_grpc().OracleStub(channel)


def is_oracle_client(oracle: Any) -> bool:
    """Whether ``oracle`` is a worker's client of the chief's oracle, with a ``stub`` to replace."""
    from keras_tuner.src.distribute import oracle_client

    return isinstance(oracle, oracle_client.OracleClient) and hasattr(oracle, "stub")
