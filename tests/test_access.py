"""Who sees what: project membership and roles, 404 for projects one cannot read, admin-only
routes, and the audit log."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from conftest import login, make_user

Client = AsyncTestClient[Litestar]


async def project_of(client: Client, headers: dict[str, str], name: str = "") -> dict[str, Any]:
    response = await client.post(
        "/api/v2/projects", json={"name": name or f"p {uuid.uuid4().hex[:6]}"}, headers=headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_creator_owns_the_project_and_others_cannot_see_it(
    client: Client, anonymous: Client
) -> None:
    owner_id, owner_name, owner_password = await make_user(client)
    _, stranger_name, stranger_password = await make_user(client)
    owner = await login(anonymous, owner_name, owner_password)
    stranger = await login(anonymous, stranger_name, stranger_password)
    created = await project_of(anonymous, owner)
    project = created["data"]
    assert project["owner_id"] == owner_id
    assert project["members"] == {owner_id: "owner"}
    after = {"after": created["meta"]["position"]}

    assert (
        await anonymous.get(f"/api/v2/projects/{project['id']}", params=after, headers=owner)
    ).status_code == 200
    hidden = await anonymous.get(
        f"/api/v2/projects/{project['id']}", params=after, headers=stranger
    )
    assert hidden.status_code == 404
    missing = await anonymous.get(f"/api/v2/projects/{uuid.uuid4()}", headers=stranger)
    assert hidden.json()["error"].replace(project["id"], "X") == missing.json()["error"].replace(
        missing.json()["error"].split()[1], "X"
    )
    for call in (
        anonymous.put(f"/api/v2/projects/{project['id']}", json={"name": "mine"}, headers=stranger),
        anonymous.delete(f"/api/v2/projects/{project['id']}", headers=stranger),
        anonymous.get(f"/api/v2/projects/{project['id']}/history", headers=stranger),
    ):
        assert (await call).status_code == 404
    listed = await anonymous.get("/api/v2/projects", params=after, headers=stranger)
    assert project["id"] not in [p["id"] for p in listed.json()["data"]]
    mine = await anonymous.get("/api/v2/projects", params=after, headers=owner)
    assert project["id"] in [p["id"] for p in mine.json()["data"]]
    everything = await client.get(
        "/api/v2/projects", params={**after, "limit": 100, "q": project["name"]}
    )
    assert project["id"] in [p["id"] for p in everything.json()["data"]]


async def test_roles_decide_what_members_may_do(client: Client, anonymous: Client) -> None:
    _, owner_name, owner_password = await make_user(client)
    viewer_id, viewer_name, viewer_password = await make_user(client)
    owner = await login(anonymous, owner_name, owner_password)
    viewer = await login(anonymous, viewer_name, viewer_password)
    project = (await project_of(anonymous, owner))["data"]
    url = f"/api/v2/projects/{project['id']}"
    granted = await anonymous.post(
        f"{url}/members", json={"user_id": viewer_id, "role": "viewer"}, headers=owner
    )
    assert granted.status_code == 200, granted.text
    assert granted.json()["data"]["members"][viewer_id] == "viewer"
    after = {"after": granted.json()["meta"]["position"]}
    assert (await anonymous.get(url, params=after, headers=viewer)).status_code == 200
    forbidden = await anonymous.put(url, json={"name": "viewer edit"}, headers=viewer)
    assert forbidden.status_code == 403
    assert "project:write" in forbidden.json()["error"]
    assert (
        await anonymous.post(
            f"{url}/members", json={"user_id": viewer_id, "role": "owner"}, headers=viewer
        )
    ).status_code == 403

    promoted = await anonymous.post(
        f"{url}/members", json={"user_id": viewer_id, "role": "developer"}, headers=owner
    )
    assert promoted.status_code == 200
    assert (await anonymous.put(url, json={"name": "dev edit"}, headers=viewer)).status_code == 403

    revoked = await anonymous.delete(f"{url}/members/{viewer_id}", headers=owner)
    assert revoked.status_code == 200
    assert (await anonymous.get(f"{url}/history", headers=viewer)).status_code == 404


async def test_the_last_owner_cannot_be_removed_and_bad_grants_are_named(
    client: Client, anonymous: Client
) -> None:
    owner_id, owner_name, owner_password = await make_user(client)
    owner = await login(anonymous, owner_name, owner_password)
    project = (await project_of(anonymous, owner))["data"]
    url = f"/api/v2/projects/{project['id']}/members"
    last = await anonymous.delete(f"{url}/{owner_id}", headers=owner)
    assert last.status_code == 409
    assert "owner" in last.json()["error"]
    no_user = await anonymous.post(
        url, json={"user_id": str(uuid.uuid4()), "role": "viewer"}, headers=owner
    )
    assert no_user.status_code == 422
    assert "user_id" in no_user.text
    no_role = await anonymous.post(
        url, json={"user_id": owner_id, "role": "emperor"}, headers=owner
    )
    assert no_role.status_code == 422
    assert "role" in no_role.text


async def test_custom_roles_grant_exactly_their_permissions(
    client: Client, anonymous: Client
) -> None:
    name = f"auditor{uuid.uuid4().hex[:6]}"
    created = await client.post(
        "/api/v2/roles", json={"name": name, "permissions": ["project:read", "audit:read"]}
    )
    assert created.status_code == 201, created.text
    bad = await client.post(
        "/api/v2/roles", json={"name": "x" + name, "permissions": ["launch:missiles"]}
    )
    assert bad.status_code == 422
    assert "launch:missiles" in bad.json()["error"]
    duplicate = await client.post(
        "/api/v2/roles", json={"name": "owner", "permissions": ["project:read"]}
    )
    assert duplicate.status_code == 409
    roles = (await client.get("/api/v2/roles")).json()["data"]
    assert {"owner", "maintainer", "developer", "viewer"} <= {r["name"] for r in roles}

    _, owner_name, owner_password = await make_user(client)
    auditor_id, auditor_name, auditor_password = await make_user(client)
    owner = await login(anonymous, owner_name, owner_password)
    auditor = await login(anonymous, auditor_name, auditor_password)
    project = (await project_of(anonymous, owner))["data"]
    url = f"/api/v2/projects/{project['id']}"
    granted = await anonymous.post(
        f"{url}/members", json={"user_id": auditor_id, "role": name}, headers=owner
    )
    assert granted.status_code == 200
    assert (await anonymous.get(f"{url}/history", headers=auditor)).status_code == 200
    assert (await anonymous.put(url, json={"name": "no"}, headers=auditor)).status_code == 403
    audit = await anonymous.get(
        "/api/v2/audit",
        params={
            "resource_type": "project",
            "resource_id": project["id"],
            "after": granted.json()["meta"]["position"],
        },
        headers=auditor,
    )
    assert audit.status_code == 200
    assert audit.json()["meta"]["total"] >= 2


async def test_a_user_calling_an_admin_route_gets_403(client: Client, anonymous: Client) -> None:
    _, name, password = await make_user(client)
    headers = await login(anonymous, name, password)
    assert (await anonymous.get("/api/v2/users", headers=headers)).status_code == 403
    created = await anonymous.post(
        "/api/v2/users",
        json={
            "username": "sneaky" + uuid.uuid4().hex[:4],
            "email": "s@example.com",
            "password": "Good-pass-123",
        },
        headers=headers,
    )
    assert created.status_code == 403
    assert (
        await anonymous.post(
            "/api/v2/roles", json={"name": "mine", "permissions": ["project:read"]}, headers=headers
        )
    ).status_code == 403
    assert (await anonymous.get("/api/v2/users")).status_code == 401


async def test_audit_shows_both_actors_with_their_ip_and_user_agent(
    client: Client, anonymous: Client
) -> None:
    alice_id, alice_name, alice_password = await make_user(client)
    bob_id, bob_name, bob_password = await make_user(client)
    alice = {**await login(anonymous, alice_name, alice_password), "User-Agent": "alice-browser/1"}
    bob = {**await login(anonymous, bob_name, bob_password), "User-Agent": "bob-cli/7"}
    project = (await project_of(anonymous, alice))["data"]
    url = f"/api/v2/projects/{project['id']}"
    await anonymous.post(
        f"{url}/members", json={"user_id": bob_id, "role": "maintainer"}, headers=alice
    )
    renamed = await anonymous.put(url, json={"name": "renamed by bob"}, headers=bob)
    assert renamed.status_code == 200, renamed.text
    after = renamed.json()["meta"]["position"]

    audit = await client.get(
        "/api/v2/audit", params={"resource_type": "project", "resource_id": project["id"]}
    )
    assert audit.status_code == 200
    entries = audit.json()["data"]
    by_type = {e["type"]: e for e in entries}
    created, updated = by_type["ProjectCreated"], by_type["ProjectUpdated"]
    assert created["actor_id"] == alice_id
    assert created["user_agent"] == "alice-browser/1"
    assert updated["actor_id"] == bob_id
    assert updated["user_agent"] == "bob-cli/7"
    assert created["client_ip"]
    assert updated["client_ip"]
    assert updated["data"]["name"] == "renamed by bob"

    by_actor = await client.get("/api/v2/audit", params={"actor_id": bob_id})
    assert {e["actor_id"] for e in by_actor.json()["data"]} == {bob_id}
    # Bob maintains the project but does not own it: no audit:read.
    assert (
        await anonymous.get(
            "/api/v2/audit", params={"resource_type": "project", "after": after}, headers=bob
        )
    ).json()["meta"]["total"] == 0
    owners_view = await anonymous.get("/api/v2/audit", params={"after": after}, headers=alice)
    assert {e["resource_id"] for e in owners_view.json()["data"]} == {project["id"]}
    bad = await client.get("/api/v2/audit", params={"resource_type": "spaceship"})
    assert bad.status_code == 400


async def test_owners_audit_the_experiments_of_their_projects(
    client: Client, anonymous: Client
) -> None:
    _, owner_name, owner_password = await make_user(client)
    owner = await login(anonymous, owner_name, owner_password)
    project = (await project_of(anonymous, owner))["data"]
    experiment = await anonymous.post(
        "/api/v2/experiments", json={"project_id": project["id"], "name": "audited"}, headers=owner
    )
    assert experiment.status_code == 201
    audit = await anonymous.get(
        "/api/v2/audit",
        params={"resource_type": "experiment", "after": experiment.json()["meta"]["position"]},
        headers=owner,
    )
    assert [e["resource_id"] for e in audit.json()["data"]] == [experiment.json()["data"]["id"]]


async def test_owners_audit_the_training_jobs_of_their_projects(
    client: Client, anonymous: Client
) -> None:
    from training_support import text_corpus, upload_dataset

    _, owner_name, owner_password = await make_user(client)
    owner = await login(anonymous, owner_name, owner_password)
    project = (await project_of(anonymous, owner))["data"]
    dataset_id = await upload_dataset(client, project["id"], text_corpus(2_000), "c.txt")
    job = await anonymous.post(
        "/api/v2/training/submit",
        json={"project_id": project["id"], "template": "char-lm", "dataset_id": dataset_id},
        headers=owner,
    )
    assert job.status_code == 201, job.text
    submitted = job.json()
    # No training worker runs here: the job waits until it is cancelled.
    cancelled = await anonymous.post(
        f"/api/v2/training/jobs/{submitted['data']['id']}/cancel", headers=owner
    )
    assert cancelled.status_code == 202
    position = cancelled.json()["meta"]["position"]
    # The owner's audit finds their jobs through the jobs read model: wait until it has this one.
    seen = await anonymous.get(
        f"/api/v2/training/jobs/{submitted['data']['id']}",
        params={"after": position},
        headers=owner,
    )
    assert seen.status_code == 200, seen.text
    audit = await anonymous.get(
        "/api/v2/audit",
        params={"resource_type": "job", "after": position},
        headers=owner,
    )
    assert audit.status_code == 200, audit.text
    entries = audit.json()["data"]
    assert {e["resource_id"] for e in entries} == {submitted["data"]["id"]}
    assert {e["type"] for e in entries} == {"JobSubmitted", "JobCancelled"}
