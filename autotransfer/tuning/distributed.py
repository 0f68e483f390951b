"""KerasTuner's chief/worker mode, with a shared secret every worker must present.

KerasTuner serves the chief's oracle over plain gRPC and accepts any caller: a process posing
as a worker could take trials and report made-up results. Here:

* :func:`settings` reads and checks ``KERASTUNER_TUNER_ID`` / ``KERASTUNER_ORACLE_IP`` /
  ``KERASTUNER_ORACLE_PORT`` and ``AUTOTRANSFER_TUNER_TOKEN`` (malformed or unsafe settings are a
  :class:`~autotransfer.errors.DistributedTuningError`; a chief or worker on an address other
  than loopback needs the token);
* :func:`serve_chief` serves the oracle with KerasTuner's own servicer behind :class:`TokenCheck`,
  a ``grpc.ServerInterceptor`` that refuses every call without the token (``UNAUTHENTICATED``)
  before the servicer sees it, so nothing of such a call is recorded;
* :func:`authenticate_worker` gives a worker's oracle client a stub whose calls carry the token
  in their metadata; :func:`refused_as_error` turns the chief's refusal into a clear error.

The token authenticates workers; it does not encrypt the traffic (see docs/security.md).

This is the one module that relies on KerasTuner's private internals (pinned by
tests/tuning/test_distributed_auth.py): ``oracle_chief.OracleServicer(oracle)`` with its
``stop_triggered`` flag, ``oracle_chief.exit_chief(oracle)``, the generated
``add_OracleServicer_to_server`` / ``OracleStub``, a worker's ``BaseTuner.oracle`` being an
``oracle_client.OracleClient`` that makes every call through its ``stub`` attribute, and the
chief's branch of ``BaseTuner.search`` (``oracle.verbose = …; save(); start_server(oracle)``),
which :func:`serve_chief` replaces.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import os
import re
import threading
import time
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc

from autotransfer.errors import DistributedTuningError
from autotransfer.tuning import _keras_tuner_private as private

TOKEN_ENV = "AUTOTRANSFER_TUNER_TOKEN"
METADATA_KEY = "autotransfer-token"
MIN_TOKEN_LENGTH = 16
#: refusals the chief reports one by one (then only the count at the end)
REPORTED_REFUSALS = 10
MAKE_TOKEN = (f"export {TOKEN_ENV}=\"$(python -c 'import secrets; "
              "print(secrets.token_urlsafe(32))')\" on the chief and give every worker the "
              "same value")
_HOST_NAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
                        r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$")

Say = Callable[[str], None]


@dataclass(frozen=True)
class Distribution:
    """This process's part in a search: ``role`` 'local', 'chief' or 'worker'."""

    role: str
    tuner_id: str = ""
    host: str = ""
    port: int = 0
    token: str | None = field(default=None, repr=False)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def address(self) -> str:
        """``host:port`` as gRPC reads it (an IPv6 address in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def role() -> str:
    """'chief', 'worker' (KerasTuner's distributed mode) or 'local'; raises
    :class:`~autotransfer.errors.DistributedTuningError` on malformed or unsafe settings."""
    return settings().role


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # any other host name may be reachable from elsewhere
        return False


def _host(raw: str, port_set: bool) -> str:
    text = raw.strip()
    if not text:
        raise DistributedTuningError(
            "KERASTUNER_ORACLE_IP is empty. Set it to the chief's address (127.0.0.1 when the "
            "chief and workers share this machine), or unset it for a search on this machine "
            "alone.")
    host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(host))
    if _HOST_NAME.match(host):
        return host
    head, sep, tail = text.rpartition(":")
    if sep and tail.isdigit() and not port_set:
        raise DistributedTuningError(
            f"KERASTUNER_ORACLE_IP={text!r} holds a port: set KERASTUNER_ORACLE_IP={head} and "
            f"KERASTUNER_ORACLE_PORT={tail} on the chief and every worker.")
    raise DistributedTuningError(
        f"KERASTUNER_ORACLE_IP={text!r} is not a host name or IP address. Set it to the "
        "chief's address (e.g. 127.0.0.1 or 10.0.0.5) and the port in KERASTUNER_ORACLE_PORT.")


def _port(raw: str) -> int:
    text = raw.strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise DistributedTuningError(
            f"KERASTUNER_ORACLE_PORT={raw!r} is not a port number. Set it to a number from 1 to "
            "65535 (the same on the chief and every worker), e.g. 8000.")
    return int(text)


def _token(env: Mapping[str, str]) -> str | None:
    token = env.get(TOKEN_ENV)
    if token is None:
        return None
    if not token:
        raise DistributedTuningError(f"{TOKEN_ENV} is set but empty. {MAKE_TOKEN}.")
    if any(not 33 <= ord(c) <= 126 for c in token):
        raise DistributedTuningError(
            f"{TOKEN_ENV} holds spaces or characters other than printable ASCII, which gRPC "
            f"metadata cannot carry. {MAKE_TOKEN}.")
    if len(token) < MIN_TOKEN_LENGTH:
        raise DistributedTuningError(
            f"{TOKEN_ENV} is {len(token)} characters long, too short to be a secret (at least "
            f"{MIN_TOKEN_LENGTH}). {MAKE_TOKEN}.")
    return token


def settings(environ: Mapping[str, str] | None = None) -> Distribution:
    """The distribution settings in ``environ`` (default ``os.environ``), checked.

    Roles follow KerasTuner's: distributed when ``KERASTUNER_ORACLE_IP`` is set, the chief when
    ``KERASTUNER_TUNER_ID`` contains ``chief``.

    Raises:
        DistributedTuningError: a variable is missing or malformed, or the chief's address is not
            loopback and ``AUTOTRANSFER_TUNER_TOKEN`` is unset.
    """
    env = os.environ if environ is None else environ
    raw_ip, raw_port = env.get("KERASTUNER_ORACLE_IP"), env.get("KERASTUNER_ORACLE_PORT")
    if raw_ip is None:
        if raw_port is not None:
            raise DistributedTuningError(
                "KERASTUNER_ORACLE_PORT is set but KERASTUNER_ORACLE_IP is not, so this would not "
                "join a distributed search. Set KERASTUNER_ORACLE_IP to the chief's address, or "
                "unset KERASTUNER_ORACLE_PORT for a search on this machine alone.")
        return Distribution("local")
    host = _host(raw_ip, raw_port is not None)
    if raw_port is None:
        raise DistributedTuningError(
            "KERASTUNER_ORACLE_IP is set but KERASTUNER_ORACLE_PORT is not. Set it to the "
            "chief's port (e.g. 8000) on the chief and every worker, or unset "
            "KERASTUNER_ORACLE_IP for a search on this machine alone.")
    port = _port(raw_port)
    tuner_id = env.get("KERASTUNER_TUNER_ID", "").strip()
    if not tuner_id:
        raise DistributedTuningError(
            "KERASTUNER_ORACLE_IP is set but KERASTUNER_TUNER_ID is not. Set "
            "KERASTUNER_TUNER_ID=chief on the chief and tuner0, tuner1, … on the workers.")
    dist = Distribution("chief" if "chief" in tuner_id else "worker", tuner_id, host, port,
                        _token(env))
    if dist.token is None and not dist.loopback:
        if dist.role == "chief":
            raise DistributedTuningError(
                f"Refusing to serve the search's oracle on {dist.address} without "
                f"{TOKEN_ENV}: anyone who can reach that address could take trials and report "
                f"made-up results. {MAKE_TOKEN}, or set KERASTUNER_ORACLE_IP=127.0.0.1 when "
                "the workers run on this machine.")
        raise DistributedTuningError(
            f"{TOKEN_ENV} is not set, and the chief at {dist.address} is not on this machine: "
            f"it refuses workers without the token. Set {TOKEN_ENV} to the chief's value.")
    return dist


# ----------------------------------------------------------------------------- the chief
class TokenCheck(grpc.ServerInterceptor):
    """Lets through the calls whose metadata carries the token; refuses the others."""

    def __init__(self, token: str, on_refused: Callable[[str, str], None] | None = None) -> None:
        self._digest = hashlib.sha256(token.encode()).digest()
        self._on_refused = on_refused
        self._lock = threading.Lock()
        self.refused = 0

    def valid(self, metadata: Any) -> bool:
        """Whether ``metadata`` carries the token (compared in constant time)."""
        presented = next((value for key, value in metadata or () if key == METADATA_KEY), None)
        if not isinstance(presented, str):
            return False
        digest = hashlib.sha256(presented.encode("utf-8", "replace")).digest()
        return hmac.compare_digest(digest, self._digest)

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        if self.valid(details.invocation_metadata):
            return continuation(details)
        method = details.method

        def refuse(request: Any, context: Any) -> None:
            with self._lock:
                self.refused += 1
            if self._on_refused is not None:
                self._on_refused(context.peer(), method)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"missing or wrong {TOKEN_ENV}")

        return grpc.unary_unary_rpc_method_handler(refuse)


@dataclass
class ChiefServer:
    """A started gRPC server serving ``oracle``; ``check`` is None without a token."""

    server: Any
    servicer: Any
    check: TokenCheck | None

    def stop(self) -> None:
        self.server.stop(grace=None)


def start_server(oracle: Any, dist: Distribution, say: Say | None = None) -> ChiefServer:
    """Serve ``oracle`` with KerasTuner's servicer at ``dist.address``, behind the token check."""
    say = say or (lambda text: None)
    check = None
    if dist.token is not None:
        def on_refused(peer: str, method: str) -> None:
            if check is not None and check.refused <= REPORTED_REFUSALS:
                say(f"Refused {method.rsplit('/', 1)[-1]} from {peer}: missing or wrong "
                    f"{TOKEN_ENV}")

        check = TokenCheck(dist.token, on_refused)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1),
                         interceptors=[check] if check is not None else [],
                         options=[("grpc.so_reuseport", 0)])  # a second chief may not share it
    servicer = private.oracle_servicer(oracle)
    private.add_oracle_servicer(servicer, server)
    try:
        bound = server.add_insecure_port(dist.address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise DistributedTuningError(
            f"The chief cannot listen on {dist.address}: the port is in use or {dist.host} is "
            "not an address of this machine. Choose another KERASTUNER_ORACLE_PORT (or "
            "KERASTUNER_ORACLE_IP) for the chief and every worker.")
    server.start()
    if check is None:
        say(f"Serving the oracle on {dist.address} without {TOKEN_ENV}: any process on this "
            "machine can join the search")
    return ChiefServer(server, servicer, check)


def serve_chief(tuner: Any, *, verbose: Any = 1, say: Say | None = None,
                poll: float = 1.0) -> None:
    """What KerasTuner's ``search`` does on the chief, with the token check: serve the oracle
    until it stops the search and no trial is running."""
    dist = settings()
    oracle = tuner.oracle
    oracle.verbose = verbose
    tuner.save()
    chief = start_server(oracle, dist, say)
    try:
        while not (chief.servicer.stop_triggered and private.chief_may_exit(oracle)):
            time.sleep(poll)
    finally:
        chief.stop()
    if chief.check is not None and chief.check.refused and say is not None:
        say(f"Refused {chief.check.refused} request(s) without the right {TOKEN_ENV}")


# ----------------------------------------------------------------------------- a worker
class _CallDetails(namedtuple("_CallDetails", "method timeout metadata credentials "
                                              "wait_for_ready compression"),
                   grpc.ClientCallDetails):
    """A call's details with other metadata."""


class TokenMetadata(grpc.UnaryUnaryClientInterceptor):
    """Adds the token to the metadata of every call."""

    def __init__(self, token: str) -> None:
        self._pair = (METADATA_KEY, token)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), self._pair]
        return continuation(_CallDetails(
            details.method, details.timeout, metadata, details.credentials,
            getattr(details, "wait_for_ready", None), getattr(details, "compression", None)),
            request)


def oracle_stub(dist: Distribution) -> Any:
    """A stub of the chief's oracle whose calls carry ``dist.token`` (when set)."""
    channel = grpc.insecure_channel(dist.address)
    if dist.token is not None:
        channel = grpc.intercept_channel(channel, TokenMetadata(dist.token))
    return private.oracle_stub(channel)


def authenticate_worker(tuner: Any) -> None:
    """On a worker, make ``tuner``'s calls to the chief carry the token (else nothing)."""
    dist = settings()
    if dist.role != "worker":
        return
    client = tuner.oracle
    if not private.is_oracle_client(client):
        raise RuntimeError("KerasTuner no longer gives a worker an OracleClient with a 'stub': "
                           "autotransfer.tuning.distributed needs updating")
    client.stub = oracle_stub(dist)


@contextlib.contextmanager
def refused_as_error() -> Iterator[None]:
    """Turn the chief's refusal (or absence) into a :class:`DistributedTuningError`."""
    try:
        yield
    except grpc.RpcError as exc:
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        dist = settings()
        if code == grpc.StatusCode.UNAUTHENTICATED:
            raise DistributedTuningError(
                f"The chief at {dist.address} refused this worker ({dist.tuner_id}): "
                f"{TOKEN_ENV} is " + ("not set" if dist.token is None else "not the chief's")
                + f". Set {TOKEN_ENV} to the chief's value and start the worker again."
            ) from None
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise DistributedTuningError(
                f"The chief at {dist.address} did not answer ({code.name}). Start the chief "
                "first (KERASTUNER_TUNER_ID=chief) and check KERASTUNER_ORACLE_IP / "
                "KERASTUNER_ORACLE_PORT and the firewall.") from None
        raise
