"""``brainmri serve``: a web page and an HTTP API that predict, with explanations, from one model bundle.

:func:`~brainmri.serve.app.create_app` builds the FastAPI application
around a loaded model; :mod:`~brainmri.serve.uploads` reads what clients
send (types checked by content, pixel counts before decoding);
:mod:`~brainmri.serve.inference` predicts and draws heatmaps in a bounded
pool of worker threads. The page under ``static/`` is plain HTML, CSS and
JavaScript served by the app itself.
"""
