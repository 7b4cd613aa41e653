import { screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { fakeApi } from "../../../test/fakeApi";
import { envelope, renderPage } from "../../../test/render";
import { Members } from "./Members";

const OWNER = "11111111-1111-4111-8111-111111111111";
const GRACE = "22222222-2222-4222-8222-222222222222";
const project = {
  id: "0b5e6c1e-4b6d-4a3c-9c55-2c1d0f1d2a3b",
  name: "Vision",
  description: "",
  tags: [],
  status: "active",
  members: { [OWNER]: "owner" },
  owner_id: OWNER,
  config: {},
  created_at: "2026-01-01T00:00:00Z",
  updated_at: "2026-01-01T00:00:00Z",
  version: 1,
};
const roles = ["owner", "maintainer", "developer", "viewer", "auditor"].map((name) => ({ name, builtin: name !== "auditor", description: "", permissions: [] }));
const base = `/projects/${project.id}/members`;

function api() {
  return fakeApi({
    "GET /roles": envelope(roles),
    "GET /users/directory": (call) => {
      if (call.query.get("ids")) return envelope([{ id: OWNER, username: "ada", full_name: "Ada Lovelace" }]);
      const q = call.query.get("q") ?? "";
      return envelope("grace hopper".includes(q.toLowerCase()) ? [{ id: GRACE, username: "grace", full_name: "Grace Hopper" }] : []);
    },
    [`POST ${base}`]: (call) => envelope(project, { position: 7, echo: call.body }),
    [`DELETE ${base}/${OWNER}`]: envelope("the project would have no owner left", { code: "conflict" }, 409),
  });
}

describe("project members", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("are listed by name, and a new one is picked from a search of users", async () => {
    const fake = api();
    vi.stubGlobal("fetch", fake.fetch);
    renderPage("/", "/", <Members project={project} />);
    const table = screen.getByRole("table", { name: "Members" });
    expect(await within(table).findByText("ada")).toBeInTheDocument();
    expect(within(table).getByText("Ada Lovelace")).toBeInTheDocument();

    const user = userEvent.setup();
    // Not picked yet: nothing is sent.
    await user.click(screen.getByRole("button", { name: "Add member" }));
    expect(screen.getByRole("combobox", { name: "User" })).toHaveAccessibleDescription("pick a user from the list");
    expect(fake.sent("POST", base)).toHaveLength(0);

    await user.type(screen.getByRole("combobox", { name: "User" }), "hop");
    const option = await screen.findByRole("option", { name: /grace/ });
    expect(option).toHaveAttribute("aria-selected", "true");
    await user.keyboard("{Enter}");
    expect(screen.queryByRole("listbox")).not.toBeInTheDocument();
    expect(screen.getByRole("combobox", { name: "User" })).toHaveValue("grace");
    // Custom roles are offered beside the built-in ones.
    await user.selectOptions(screen.getByLabelText("Role"), "auditor");
    await user.click(screen.getByRole("button", { name: "Add member" }));
    await vi.waitFor(() => expect(fake.sent("POST", base)).toHaveLength(1));
    expect(fake.sent("POST", base)[0].body).toEqual({ user_id: GRACE, role: "auditor" });
    expect(fake.sent("GET", "/users/directory").some((call) => call.query.get("q") === "hop")).toBe(true);
  });

  it("change role in place, and a refused removal says why", async () => {
    const fake = api();
    vi.stubGlobal("fetch", fake.fetch);
    renderPage("/", "/", <Members project={project} />);
    const user = userEvent.setup();
    const role = await screen.findByRole("combobox", { name: "Role of ada" });
    await vi.waitFor(() => expect(within(role).getByRole("option", { name: "auditor" })).toBeInTheDocument());
    await user.selectOptions(role, "maintainer");
    await vi.waitFor(() => expect(fake.sent("POST", base)[0]?.body).toEqual({ user_id: OWNER, role: "maintainer" }));
    await user.click(screen.getByRole("button", { name: "Remove ada" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("the project would have no owner left");
  });

  it("are only listed for someone whose role cannot manage them", async () => {
    const viewer = { ...project, members: { [OWNER]: "owner", [GRACE]: "viewer" } };
    vi.stubGlobal(
      "fetch",
      fakeApi({
        "GET /auth/me": envelope({ id: GRACE, username: "grace", email: "g@example.com", full_name: "", system_role: "user", active: true, version: 1 }),
        "GET /roles": envelope([
          { name: "owner", builtin: true, description: "", permissions: ["project:read", "member:manage"] },
          { name: "viewer", builtin: true, description: "", permissions: ["project:read"] },
        ]),
        "GET /users/directory": envelope([{ id: OWNER, username: "ada", full_name: "" }]),
      }).fetch,
    );
    renderPage("/", "/", <Members project={viewer} />);
    expect(await screen.findByText("Your role in this project does not let you change its members.")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Add member" })).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: /^Remove/ })).not.toBeInTheDocument();
    expect(within(screen.getByRole("table", { name: "Members" })).getByText("viewer")).toBeInTheDocument();
  });
});
