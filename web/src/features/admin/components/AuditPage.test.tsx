import { screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { fakeApi, page } from "../../../test/fakeApi";
import { envelope, renderPage } from "../../../test/render";
import { AuditPage } from "./AuditPage";

const GRACE = "22222222-2222-4222-8222-222222222222";
const grace = { id: GRACE, username: "grace", full_name: "Grace Hopper" };
const entry = {
  position: 5,
  version: 1,
  recorded_at: "2026-01-01T00:00:00Z",
  actor_id: GRACE,
  actor_username: "grace",
  type: "ProjectCreated",
  resource_type: "project",
  resource_id: "0b5e6c1e-4b6d-4a3c-9c55-2c1d0f1d2a3b",
  client_ip: "127.0.0.1",
  user_agent: null,
  request_id: null,
  data: {},
};

function api() {
  return fakeApi({
    "GET /audit": page([entry]),
    "GET /users/directory": (call) => envelope(call.query.get("ids") === GRACE || "grace hopper".includes(call.query.get("q") ?? "\u0000") ? [grace] : []),
  });
}

describe("the audit log's actor filter", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("picks the actor by name and filters by their id", async () => {
    const fake = api();
    vi.stubGlobal("fetch", fake.fetch);
    renderPage("/admin/audit", "/admin/audit", <AuditPage />);
    expect(await screen.findByRole("cell", { name: "ProjectCreated" })).toBeInTheDocument();
    const user = userEvent.setup();
    await user.type(await screen.findByRole("combobox", { name: "Actor" }), "hop");
    await user.click(await screen.findByRole("option", { name: /grace/ }));
    await vi.waitFor(() => expect(fake.sent("GET", "/audit").at(-1)?.query.get("actor_id")).toBe(GRACE));
    expect(screen.getByRole("combobox", { name: "Actor" })).toHaveValue("grace");
    // Changing the text drops the filter until someone is picked again.
    await user.type(screen.getByRole("combobox", { name: "Actor" }), "x");
    await vi.waitFor(() => expect(fake.sent("GET", "/audit").at(-1)?.query.get("actor_id")).toBeNull());
    expect(screen.getByRole("combobox", { name: "Actor" })).toHaveValue("gracex");
    expect(await screen.findByText(/No user matches/)).toBeInTheDocument();
  });

  it("names an actor chosen from the table or the address", async () => {
    vi.stubGlobal("fetch", api().fetch);
    renderPage(`/admin/audit?actor_id=${GRACE}`, "/admin/audit", <AuditPage />);
    expect(await screen.findByRole("cell", { name: "ProjectCreated" })).toBeInTheDocument();
    await vi.waitFor(() => expect(screen.getByRole("combobox", { name: "Actor" })).toHaveValue("grace"));
    expect(screen.queryByRole("listbox")).not.toBeInTheDocument();
  });
});
