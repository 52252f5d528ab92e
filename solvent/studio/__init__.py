"""The web studio: one HTML page, plain ES modules and CSS, served at `/` (no build step).

The studio is static files that talk to the JSON API over HTTP only, with the session cookie and
the CSRF token the API hands out at sign-in. `mount(app)` adds `/` and `/static/…` to an app;
nothing else is imported from here. Every asset, the charting library (uPlot, vendored with its
licence and checksums in `static/vendor/VENDOR.json`) included, is served by Solvent itself.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

STATIC = Path(str(resources.files("solvent.studio") / "static"))

# The page loads nothing from elsewhere; images come from the API or are drawn locally (data:/blob:).
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def mount(app) -> None:
    """Serve the studio at `/` and its assets at `/static/` on a FastAPI app."""
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
               "Cache-Control": "no-cache"}

    @app.get("/", include_in_schema=False)
    def studio() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=headers)

    app.mount("/static", StaticFiles(directory=STATIC), name="studio-static")
