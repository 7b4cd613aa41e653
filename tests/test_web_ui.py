"""The web UI as the platform serves it: the app's page at `/` and at every client-side route,
hashed assets with their content types and a year of caching, and the server's own paths
(the API, the schema, health) never shadowed by the page."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from aiplatform.api.web import BUNDLE_DIR
from aiplatform.cli import main

Client = AsyncTestClient[Litestar]


def linked(page: str, suffix: str) -> str:
    """The asset of this kind that the page links to."""
    found = re.findall(r'"(/assets/[^"]+' + re.escape(suffix) + ')"', page)
    assert found, f"the page links no {suffix} asset: run `npm run build` in web/"
    return str(found[0])


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/projects",
        "/jobs/0b5e6c1e-4b6d-4a3c-9c55-2c1d0f1d2a3b",
        "/experiments/0b5e6c1e-4b6d-4a3c-9c55-2c1d0f1d2a3b",
        "/admin/history/project/0b5e6c1e-4b6d-4a3c-9c55-2c1d0f1d2a3b?as_of=3",
    ],
)
async def test_the_app_page_answers_at_the_root_and_at_client_routes(
    anonymous: Client, path: str
) -> None:
    response = await anonymous.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<div id="root"></div>' in response.text
    # The page names the current asset hashes, so it is revalidated every time.
    assert "no-cache" in response.headers["cache-control"]


async def test_the_page_loads_its_script_and_styles_from_the_bundle(anonymous: Client) -> None:
    page = (await anonymous.get("/")).text
    script, styles = linked(page, ".js"), linked(page, ".css")
    for path, media_type in ((script, "javascript"), (styles, "text/css")):
        response = await anonymous.get(path)
        assert response.status_code == 200
        assert media_type in response.headers["content-type"]
        cache = response.headers["cache-control"]
        assert "immutable" in cache
        assert "max-age=31536000" in cache


async def test_a_top_level_file_of_the_bundle_is_served_as_itself(anonymous: Client) -> None:
    response = await anonymous.get("/favicon.svg")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v2/no-such-thing",
        "/api/v2",
        "/schema/nothing-here",
        "/metrics/x",
        "/assets/missing.js",
    ],
)
async def test_unknown_server_paths_are_404s_not_the_page(anonymous: Client, path: str) -> None:
    response = await anonymous.get(path)
    assert response.status_code == 404
    assert '<div id="root">' not in response.text


async def test_the_api_schema_and_health_still_answer_beside_the_ui(anonymous: Client) -> None:
    assert (await anonymous.get("/health")).json()["data"] == {"status": "ok"}
    schema = await anonymous.get("/schema/openapi.json")
    assert schema.status_code == 200
    assert "/api/v2/projects" in schema.json()["paths"]
    refused = await anonymous.get("/api/v2/projects")
    assert refused.status_code == 401
    assert refused.json()["meta"]["code"] == "not_authenticated"


def test_openapi_prints_the_schema_without_a_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["openapi"]) == 0
    schema = json.loads(capsys.readouterr().out)
    operations = {
        operation["operationId"] for path in schema["paths"].values() for operation in path.values()
    }
    assert {"CreateToken", "ListProjects", "SubmitTrainingJob", "StreamEvents"} <= operations
    # The UI's pages are not part of the API's contract.
    assert not any(path in ("/", "/{path}") for path in schema["paths"])


def test_the_bundle_is_inside_the_package() -> None:
    assert (BUNDLE_DIR / "index.html").is_file()
    assert BUNDLE_DIR.parent == Path(__import__("aiplatform").__file__).parent


def test_the_web_uis_api_types_are_generated_from_the_current_openapi(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """web/openapi.json is what the UI's types were generated from; when the API changes it
    must be regenerated (`npm run schema` in web/), and so must the types."""
    assert main(["openapi"]) == 0
    current = json.loads(capsys.readouterr().out)
    web = Path(__file__).parent.parent / "web"
    committed = json.loads((web / "openapi.json").read_text())
    assert committed == current, "web/openapi.json is stale: run `npm run schema` in web/"
    generator = web / "node_modules" / ".bin" / "openapi-typescript"
    if not generator.exists() or shutil.which("node") is None:
        pytest.skip("the TypeScript half needs `npm ci` in web/ (npm run check does it too)")
    source = tmp_path / "openapi.json"
    source.write_text(json.dumps(current))
    subprocess.run(
        [str(generator), str(source), "-o", str(tmp_path / "schema.d.ts")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    generated = (tmp_path / "schema.d.ts").read_text()
    assert generated == (web / "src" / "api" / "schema.d.ts").read_text(), (
        "web/src/api/schema.d.ts is stale: run `npm run schema` in web/"
    )
