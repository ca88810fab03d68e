"""`nnctl serve`: a local web page to draw a digit and watch the network read it.

The library parts (predictor.py, model.py) need only NumPy and Pillow; the web app (app.py)
and the server (server.py) need the `serve` extra: Starlette, uvicorn, python-multipart.
"""
