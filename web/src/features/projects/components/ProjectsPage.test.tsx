import { screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { envelope, renderPage } from "../../../test/render";
import { ProjectsPage } from "./ProjectsPage";

const project = {
  id: "0b5e6c1e-4b6d-4a3c-9c55-2c1d0f1d2a3b",
  name: "Vision",
  description: "cats and dogs",
  tags: ["cv"],
  status: "active",
  members: {},
  owner_id: "u1",
  config: {},
  created_at: "2026-01-01T00:00:00Z",
  updated_at: "2026-01-01T00:00:00Z",
  version: 1,
};

describe("the projects page", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("lists projects and filters them by search, status and tag through the API", async () => {
    const fetched: string[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string) => {
        fetched.push(decodeURIComponent(url));
        return envelope([project], { total: 1, page: 1, limit: 20, has_more: false });
      }),
    );
    renderPage("/projects", "/projects", <ProjectsPage />);
    expect(await screen.findByRole("link", { name: "Vision" })).toBeInTheDocument();
    const user = userEvent.setup();
    await user.selectOptions(screen.getByLabelText("Status"), "archived");
    await user.click(screen.getByRole("button", { name: "cv" }));
    await vi.waitFor(() => expect(fetched.at(-1)).toContain("status=archived"));
    expect(fetched.at(-1)).toContain("tag=cv");
  });

  it("shows the API's validation error next to the field it names", async () => {
    vi.stubGlobal(
      "fetch",
      vi.fn(async (_url: string, init?: RequestInit) =>
        init?.method === "POST"
          ? envelope("name: a project with this name exists", { code: "validation_error", fields: [{ field: "name", message: "a project with this name exists" }] }, 422)
          : envelope([], { total: 0, page: 1, limit: 20, has_more: false }),
      ),
    );
    renderPage("/projects", "/projects", <ProjectsPage />);
    const user = userEvent.setup();
    await user.click(await screen.findByRole("button", { name: "New project" }));
    await user.type(screen.getByLabelText("Name"), "Vision");
    await user.click(screen.getByRole("button", { name: "Create project" }));
    const name = screen.getByLabelText("Name");
    await vi.waitFor(() => expect(name).toHaveAccessibleDescription("a project with this name exists"));
    expect(name).toHaveAttribute("aria-invalid", "true");
  });
});
