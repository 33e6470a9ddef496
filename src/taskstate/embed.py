"""taskstate inside a FastAPI application of your own: `from taskstate.embed import Taskstate`.

    taskstate = Taskstate(registry, Settings(database_url=...), ui=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with taskstate.running():   # the database, store and supervisor
            yield

    app = FastAPI(lifespan=lifespan)
    app.mount("/jobs", taskstate.app)     # its API, event stream and (ui=True) UI under /jobs

`taskstate.app` is the same application as `taskstate serve`'s (its routes, error shape,
limits and browser guard) with its paths relative to the mount point; a mounted application's
own lifespan never runs, hence `running()` in yours. The README's "Embedding in your FastAPI
app" is the whole example. This module is the stable public face of `taskstate.app.Taskstate`.
"""

from taskstate.app import Taskstate
from taskstate.config import Settings
from taskstate.web.deps import Services

__all__ = ["Services", "Settings", "Taskstate"]
