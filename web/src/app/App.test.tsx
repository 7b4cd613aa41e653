import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { cleanup, render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { Suspense } from "react";
import { MemoryRouter } from "react-router";
import { setSession } from "../api/session";
import { fakeApi, page } from "../test/fakeApi";
import { envelope } from "../test/render";
import { AppRoutes } from "./App";

const tokens = { access_token: "a", refresh_token: "r", token_type: "bearer", expires_in: 900 };
const me = { id: "u1", username: "ada", email: "a@example.com", full_name: "", system_role: "user", active: true, version: 1 };

function renderApp(path: string) {
  render(
    <QueryClientProvider client={new QueryClient({ defaultOptions: { queries: { retry: false } } })}>
      <MemoryRouter initialEntries={[path]}>
        <Suspense fallback={<p>loading</p>}>
          <AppRoutes />
        </Suspense>
      </MemoryRouter>
    </QueryClientProvider>,
  );
}

describe("leaving and coming back", () => {
  beforeEach(() => {
    vi.stubGlobal(
      "fetch",
      fakeApi({
        "POST /auth/token": envelope(tokens),
        "POST /auth/logout": envelope(null),
        "GET /auth/me": envelope(me),
        "GET /notifications": page([]),
        "GET /gpu/status": envelope({ available: false, reason: "no GPU", gpus: [], history: [], hosts: [], workers: [] }),
        "GET /training/jobs": page([]),
        "GET /projects": page([]),
        "GET /streams": envelope("no streams in this test", null, 503),
      }).fetch,
    );
  });
  afterEach(() => {
    cleanup(); // before the session ends, so nothing is left to re-render
    vi.unstubAllGlobals();
    setSession(null);
  });

  it("after a logout, the next login lands on the dashboard, not on the last user's page", async () => {
    setSession(tokens);
    renderApp("/profile");
    expect(await screen.findByRole("heading", { name: "Profile" })).toBeInTheDocument();
    const user = userEvent.setup();
    await user.click(screen.getByRole("button", { name: "Log out" }));
    await user.type(await screen.findByLabelText("Username"), "grace");
    await user.type(screen.getByLabelText("Password"), "another password 7");
    await user.click(screen.getByRole("button", { name: "Log in" }));
    expect(await screen.findByRole("heading", { name: "Dashboard" })).toBeInTheDocument();
  });

  it("a session that ended by itself comes back to its page after logging in again", async () => {
    renderApp("/profile");
    const user = userEvent.setup();
    await user.type(await screen.findByLabelText("Username"), "ada");
    await user.type(screen.getByLabelText("Password"), "a password 7");
    await user.click(screen.getByRole("button", { name: "Log in" }));
    expect(await screen.findByRole("heading", { name: "Profile" })).toBeInTheDocument();
  });
});
