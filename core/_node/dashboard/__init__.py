"""The head's web dashboard (starlette, served by uvicorn) and the nodes' metrics endpoint.

In: HTTP requests carrying the cluster token (auth.py); out: HTML pages (pages.py,
html.py) and JSON (app.py) built from what the head knows (data.py: node stats from
telemetry.py, the state tables). Imported only when the first request arrives
(http_listener.py), so a node that is never asked never loads the web stack.
"""
