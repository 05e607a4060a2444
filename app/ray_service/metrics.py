"""One ``/metrics`` for the whole cluster: the actors' own registries, merged at each scrape.

Each camera actor keeps the in-process service's per-camera metrics (:mod:`app.metrics`) in a
registry of its own, and each detector actor its batch-size histogram. At each scrape the driver
asks every actor for its exposition (with a timeout: a dead or restarting actor is left out of
that scrape and counted in ``yolov7_track_metrics_scrape_failures_total``), parses it, and serves
every family once with the samples of all actors. Camera series are labelled by ``camera``
already; detector samples get a ``detector`` label so that the pools' histograms stay apart.

Series of the driver itself (``yolov7_track_`` prefix):

=============================================== ======= =========================================
``yolov7_track_actor_restarts_total``           counter ``kind`` (camera, detector), ``name``:
                                                        restarts of the actor (each restarted
                                                        actor tells the hub as it starts)
``yolov7_track_metrics_scrape_failures_total``  counter actors that did not answer a scrape
=============================================== ======= =========================================

The camera actors add ``yolov7_track_detect_retries_total`` (``camera``, ``detector``): frames
sent again to another detector actor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["ClusterMetrics", "Part", "merge_expositions"]

logger = logging.getLogger(__name__)

class Part(NamedTuple):
    """One actor's exposition: ``text`` (``None``: the actor did not answer), the ``labels`` to
    add to its samples, and ``required_label``: when set, samples without that label are left out
    (a camera actor's registry also holds the service-wide batch histogram, empty there)."""

    labels: Mapping[str, str]
    text: bytes | None
    required_label: str | None = None


#: ``() -> the actors' parts``
Fetch = Callable[[], Sequence[Part]]
#: ``() -> {kind: {name: restarts}}`` or None when the hub did not answer
Restarts = Callable[[], Mapping[str, Mapping[str, int]] | None]


def merge_expositions(parts: Sequence[Part]) -> list[Metric]:
    """The families of several Prometheus expositions, each once, with every part's samples
    (plus that part's labels; see :class:`Part`).

    Raises:
        ValueError: a part is not in the Prometheus text format (prometheus_client's parser).
    """
    families: dict[str, Metric] = {}
    for part in parts:
        if not part.text:
            continue
        for family in text_string_to_metric_families(part.text.decode("utf-8")):
            samples = [s for s in family.samples if part.required_label is None or part.required_label in s.labels]
            if not samples:
                continue
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in samples:
                merged.add_sample(sample.name, {**sample.labels, **part.labels}, sample.value, sample.timestamp,
                                  sample.exemplar)
    return list(families.values())


class _Merged:
    """A prometheus_client collector of the actors' merged families."""

    def __init__(self, fetch: Fetch, restarts: Restarts, failures: Counter) -> None:
        self._fetch = fetch
        self._restarts = restarts
        self._failures = failures

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("yolov7_track_actor_restarts", "Restarts of the service's Ray actors.",
                                     labels=["kind", "name"])
        restarts = self._restarts()
        if restarts is None:
            self._failures.inc()
        else:
            for kind, by_name in sorted(restarts.items()):
                for name, n in sorted(by_name.items()):
                    family.add_metric([kind, name], n)
        yield family
        parts = self._fetch()
        self._failures.inc(sum(1 for part in parts if part.text is None))
        yield from merge_expositions(parts)


class ClusterMetrics:
    """The driver's registry: its own series plus the actors' (module docstring). Has the
    ``exposition()`` that :class:`app.metrics.MetricsServer` serves.

    Args:
        fetch: returns the actors' expositions, each with the labels to add to it.
        restarts: returns the hub's restart counts (``Hub.restarts``).
    """

    def __init__(self, fetch: Fetch, restarts: Restarts) -> None:
        self.registry = CollectorRegistry()
        failures = Counter("yolov7_track_metrics_scrape_failures", "Actors that did not answer a metrics scrape.",
                           registry=self.registry)
        self.registry.register(_Merged(fetch, restarts, failures))

    def exposition(self) -> bytes:
        """Every series, in the Prometheus text format."""
        return generate_latest(self.registry)
