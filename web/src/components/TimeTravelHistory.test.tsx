import { screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { HistoryPage } from "../features/admin/components/HistoryPage";
import { fakeApi } from "../test/fakeApi";
import { envelope, renderPage } from "../test/render";

const ID = "0b5e6c1e-4b6d-4a3c-9c55-2c1d0f1d2a3b";
const events = [
  { position: 10, version: 1, type: "ProjectCreated", data: { name: "Vision" }, metadata: {}, recorded_at: "2026-01-01T00:00:00Z" },
  { position: 25, version: 2, type: "ProjectUpdated", data: { name: "Vision 2" }, metadata: {}, recorded_at: "2026-01-02T00:00:00Z" },
];
const then = { id: ID, name: "Vision", description: "", status: "active", version: 1 };
const now = { id: ID, name: "Vision 2", description: "", status: "active", version: 2 };

describe("time travel on a resource's history", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("shows the resource as of a chosen event, marks what changed since, and returns to now", async () => {
    const api = fakeApi({
      [`GET /projects/${ID}/history`]: envelope(events, { total: 2, page: 1, limit: 100, has_more: false }),
      [`GET /projects/${ID}`]: (call) => envelope(call.query.get("as_of") === "10" ? then : now, call.query.get("as_of") ? { as_of: "position 10", position: 10 } : null),
    });
    vi.stubGlobal("fetch", api.fetch);
    renderPage(`/admin/history/project/${ID}`, "/admin/history/:resourceType/:resourceId", <HistoryPage />);
    const user = userEvent.setup();
    await user.click(await screen.findByRole("button", { name: "view as of v1" }));
    expect(screen.getByRole("button", { name: "view as of v1" })).toHaveAttribute("aria-pressed", "true");
    expect(screen.getByRole("heading", { name: "As it was at v1" })).toBeInTheDocument();
    const state = await screen.findByRole("table", { name: "State as of this event" });
    const name = within(state).getByRole("row", { name: /^name/ });
    expect(name).toHaveTextContent("Vision");
    await vi.waitFor(() => expect(name).toHaveTextContent("changed"));
    expect(within(state).getByRole("row", { name: /^status/ })).not.toHaveTextContent("changed");
    expect(api.sent("GET", `/projects/${ID}`).some((call) => call.query.get("as_of") === "10")).toBe(true);

    await user.click(screen.getByRole("button", { name: "Back to now" }));
    expect(screen.queryByRole("table", { name: "State as of this event" })).not.toBeInTheDocument();
  });

  it("opens at the position in the address, so the view can be linked to", async () => {
    vi.stubGlobal(
      "fetch",
      fakeApi({
        [`GET /projects/${ID}/history`]: envelope(events, { total: 2, page: 1, limit: 100, has_more: false }),
        [`GET /projects/${ID}`]: envelope(now),
      }).fetch,
    );
    renderPage(`/admin/history/project/${ID}?as_of=25`, "/admin/history/:resourceType/:resourceId", <HistoryPage />);
    expect(await screen.findByRole("heading", { name: "As it was at v2" })).toBeInTheDocument();
    expect(await screen.findByRole("table", { name: "State as of this event" })).toHaveTextContent("Vision 2");
  });
});
