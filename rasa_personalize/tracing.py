"""OpenTelemetry spans around the steps of an action, exported with OTLP when configured.

Spans (attributes carry names, counts and outcomes; never a sender id, customer id or key):

- ``personalize.action``: one per webhook call, ``personalize.action.name`` and
  ``personalize.correlation_id`` (the keyed hash of the conversation that logs carry too);
- ``personalize.store.read``: a customer read, inline on the loop's thread or through
  the pool (``personalize.store.path``);
- ``personalize.redis``: one guarded Redis call (``personalize.redis.target``);
- ``personalize.rules``: the decision rules (``personalize.rules.rule``, the deciding rule);
- ``personalize.recommend``: the recommendation chain (strategy, source, count).

Off by default, and then nearly free: each traced function checks one module global and
calls straight through (``bench/tracing_overhead.py`` measures it). On when the action
server starts (:mod:`rasa_personalize.instrumentation` hooks it on the app): rasa-sdk's
tracer provider when endpoints.yml has a ``tracing:`` section (our spans then nest under
rasa-sdk's), else an OTLP/HTTP exporter with a batch processor when
``PERSONALIZE_OTLP_ENDPOINT`` is set. A failed export never fails a request: the batch
processor drops the spans and logs it.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar, cast
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

ACTION_SPAN: Final = "personalize.action"
STORE_READ_SPAN: Final = "personalize.store.read"
REDIS_SPAN: Final = "personalize.redis"
RULES_SPAN: Final = "personalize.rules"
RECOMMEND_SPAN: Final = "personalize.recommend"

DEFAULT_SERVICE_NAME: Final = "rasa-personalize"
TRACES_PATH: Final = "/v1/traces"
INSTRUMENTATION_NAME: Final = "rasa_personalize"

AttributeValue = str | bool | int | float
Attributes = Mapping[str, AttributeValue]
AttributesOf = Attributes | Callable[..., Attributes] | None

# The tracer of this process while tracing is on; None is off. A module global, read once
# per traced call: the whole cost of tracing when it is off.
_tracer: Tracer | None = None
_provider: TracerProvider | None = None
# The provider built here from PERSONALIZE_OTLP_ENDPOINT: flushed and shut down here.
_owned_provider: TracerProvider | None = None

_NO_SPAN: Final[AbstractContextManager[None]] = nullcontext()


def enable_tracing(provider: TracerProvider) -> None:
    """Record this package's spans with ``provider`` (its processors export them)."""
    global _tracer, _provider  # noqa: PLW0603  # the one switch every traced call reads
    from rasa_personalize import __version__  # noqa: PLC0415

    _tracer = provider.get_tracer(INSTRUMENTATION_NAME, __version__)
    _provider = provider


def disable_tracing() -> None:
    """Stop recording spans (the provider is left as it is)."""
    global _tracer, _provider  # noqa: PLW0603
    _tracer = None
    _provider = None


def tracing_enabled() -> bool:
    """Whether spans are being recorded."""
    return _tracer is not None


def _failed(span: Span, error: BaseException) -> None:
    """Mark a span failed by the error's type alone.

    OpenTelemetry's own recording would add the message and traceback as an event, and a
    driver's message may quote SQL parameters (customer keys).
    """
    from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415  # loaded with the SDK

    kind = type(error).__qualname__
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR, kind))


@contextmanager
def _recording(
    tracer: Tracer, name: str, attributes: Attributes | None, context: Context | None = None
) -> Iterator[Span]:
    with tracer.start_as_current_span(
        name,
        context=context,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as error:
            _failed(span, error)
            raise


def span(
    name: str, attributes: Attributes | None = None, context: Context | None = None
) -> AbstractContextManager[Span | None]:
    """A span around a block (``with span("x") as s:``); ``s`` is None when tracing is off.

    Args:
        name: the span's name.
        attributes: its attributes (names, counts, outcomes: never a customer id or key).
        context: the parent's context when it is not the current span's (a caller's
            trace from request headers).
    """
    tracer = _tracer
    if tracer is None:
        return _NO_SPAN
    return _recording(tracer, name, attributes, context)


def _attributes(of: AttributesOf, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Attributes:
    if of is None:
        return {}
    if callable(of):
        return of(*args, **kwargs)
    return of


def traced(
    name: str,
    attributes: AttributesOf = None,
    *,
    result: Callable[[Any], Attributes] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function (sync or async) to run inside a span named ``name``.

    Args:
        name: the span's name.
        attributes: fixed attributes, or a function of the call's arguments giving them.
        result: a function of the return value giving attributes to add at the end.

    With tracing off, a call goes straight through (an async function's coroutine is
    returned as it is, without a second coroutine around it).
    """

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(function):

            async def in_span(tracer: Tracer, args: Any, kwargs: Any) -> Any:
                with _recording(tracer, name, _attributes(attributes, args, kwargs)) as current:
                    value = await function(*args, **kwargs)
                    if result is not None:
                        current.set_attributes(result(value))
                    return value

            @functools.wraps(function)
            def call_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                tracer = _tracer
                if tracer is None:
                    return function(*args, **kwargs)
                return in_span(tracer, args, kwargs)

            return cast("Callable[P, R]", call_async)

        @functools.wraps(function)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            tracer = _tracer
            if tracer is None:
                return function(*args, **kwargs)
            with _recording(tracer, name, _attributes(attributes, args, kwargs)) as current:
                value = function(*args, **kwargs)
                if result is not None:
                    current.set_attributes(result(value))
                return value

        return call

    return decorate


def store_read(path: str) -> Callable[..., Attributes]:
    """Attributes of a ``reader(connection, *args)`` call: the path and the reader's name.

    For methods called as ``(self, reader, *args)``; the arguments after the reader (a
    customer key, say) are never read.
    """

    def attributes(_owner: object, reader: object, *_args: object) -> Attributes:
        return {
            "personalize.store.path": path,
            "personalize.store.reader": getattr(reader, "__name__", "reader"),
        }

    return attributes


# -- turning it on and off ------------------------------------------------------------


def _traces_url(endpoint: str) -> str:
    """``http://collector:4318`` -> ``http://collector:4318/v1/traces`` (as OpenTelemetry's
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` reads); a URL that names the path already is kept."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def otlp_tracer_provider(endpoint: str) -> TracerProvider:
    """A provider exporting to an OTLP/HTTP collector through a batch processor.

    The service name is ``rasa-personalize`` unless ``OTEL_SERVICE_NAME`` (or
    ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``) names another; the exporter reads
    the other standard ``OTEL_EXPORTER_OTLP_*`` variables (headers, timeout, certificate,
    compression) and the processor ``OTEL_BSP_*``.
    """
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=_traces_url(endpoint)))
    )
    return provider


def _where(endpoint: str) -> str:
    # Scheme, host and port: a URL's user information would be a credential.
    parts = urlsplit(endpoint)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def start_tracing(app_provider: TracerProvider | None = None) -> str:
    """Turn tracing on as configured; returns where spans go: ``rasa-sdk``, ``otlp`` or
    ``off`` (then whatever was enabled before stays so).

    Args:
        app_provider: rasa-sdk's provider (``app.ctx.tracer_provider``), when its
            endpoints file configures tracing; it wins over ``PERSONALIZE_OTLP_ENDPOINT``.

    Raises:
        ConfigurationError: ``PERSONALIZE_OTLP_ENDPOINT`` is not an http(s) URL.
    """
    global _owned_provider  # noqa: PLW0603
    from rasa_personalize.settings import load_observability_settings  # noqa: PLC0415

    if app_provider is not None:
        enable_tracing(app_provider)
        return "rasa-sdk"
    endpoint = load_observability_settings().otlp_endpoint
    if endpoint is None:
        return "off"
    if _owned_provider is None:
        _owned_provider = otlp_tracer_provider(endpoint)
        logger.info("Tracing on: spans go to the OTLP collector at %s", _where(endpoint))
    enable_tracing(_owned_provider)
    return "otlp"


def stop_tracing(app_provider: TracerProvider | None = None) -> None:
    """Turn off what :func:`start_tracing` turned on; send the spans still buffered."""
    global _owned_provider  # noqa: PLW0603
    owned = _owned_provider
    if _provider is not None and _provider in (owned, app_provider):
        disable_tracing()
    if owned is not None:
        _owned_provider = None
        owned.shutdown()  # flushes the batch processor first
