"""The ASGI entry point for several server processes: `uvicorn minyun.web.asgi:app`."""

from minyun.web.app import create_app

app = create_app()
