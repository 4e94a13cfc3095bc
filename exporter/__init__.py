"""Prometheus exporter for the background tasks of Huawei Cloud DCS and DMS instances.

Data flows one way, and so do the imports (tests/test_layering.py checks both):

    config ─► polling (targets ─► poller ─► state) ─► exposition (snapshot) ─► web
                 │
                 └─► cloud (signed GETs) ─► core (pure values and rules)

- leaves, importing nothing else of the exporter: `config/`, `signing/`, `telemetry/`
  (logs, own metrics), `aio` (loop helpers), `text` (hostile text made safe);
- `core/`: pure values and rules; `cloud/`: talking to Huawei Cloud; `polling/`: the poller,
  the dialects, the state; `exposition/`: the families, the snapshot, the pre-rendered
  lines; `web/`: the HTTP server, the routes, the landing page;
- entry points: `cli` (flags), `app` (wires the layers and runs them), `demo`;
- `simulator/`: a simulated cloud, apart (it shares only `signing/`).
"""

__version__ = "0.1.0"
