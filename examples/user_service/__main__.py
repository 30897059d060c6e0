"""``python -m examples.user_service``: both servers on loopback, both clients against them."""

from __future__ import annotations

import asyncio

from examples.user_service.client import reserve_all, reserve_all_aio
from examples.user_service.service import Inventory, serve, serve_aio


def main() -> None:
    """Run the sync pair, then the aio pair, and print what each call came to."""
    server, port = serve(Inventory())
    try:
        print(f"=== sync server + sync client on 127.0.0.1:{port}")
        print("\n".join(reserve_all(f"127.0.0.1:{port}")))
    finally:
        server.stop(None).wait(5)

    async def aio() -> None:
        aio_server, aio_port = await serve_aio(Inventory())
        try:
            print(f"=== aio server + aio client on 127.0.0.1:{aio_port}")
            print("\n".join(await reserve_all_aio(f"127.0.0.1:{aio_port}")))
        finally:
            await aio_server.stop(None)

    asyncio.run(aio())


if __name__ == "__main__":
    main()
