import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter, Route, Routes } from "react-router";
import { getSession } from "../../../api/session";
import { LoginPage } from "./LoginPage";

function renderLogin() {
  render(
    <QueryClientProvider client={new QueryClient()}>
      <MemoryRouter initialEntries={["/login"]}>
        <Routes>
          <Route path="/login" element={<LoginPage />} />
          <Route path="/" element={<h1>Dashboard</h1>} />
        </Routes>
      </MemoryRouter>
    </QueryClientProvider>,
  );
}

async function logInAs(username: string, password: string) {
  const user = userEvent.setup();
  await user.type(screen.getByLabelText("Username"), username);
  await user.type(screen.getByLabelText("Password"), password);
  await user.click(screen.getByRole("button", { name: "Log in" }));
}

describe("the login form", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("logs in and goes to the dashboard", async () => {
    vi.stubGlobal(
      "fetch",
      vi.fn(async () =>
        Response.json({ success: true, data: { access_token: "a", refresh_token: "r", token_type: "bearer", expires_in: 900 } }),
      ),
    );
    renderLogin();
    await logInAs("ada", "correct horse");
    expect(await screen.findByRole("heading", { name: "Dashboard" })).toBeInTheDocument();
    expect(getSession()?.accessToken).toBe("a");
  });

  it("shows the API's refusal as it says it", async () => {
    vi.stubGlobal(
      "fetch",
      vi.fn(async () => Response.json({ success: false, error: "wrong username or password", meta: { code: "not_authenticated" } }, { status: 401 })),
    );
    renderLogin();
    await logInAs("ada", "wrong");
    expect(await screen.findByRole("alert")).toHaveTextContent("wrong username or password");
  });

  it("says when to try again after too many attempts", async () => {
    vi.stubGlobal(
      "fetch",
      vi.fn(async () =>
        Response.json({ success: false, error: "too many login attempts", meta: { code: "rate_limited", retry_after: 42 } }, { status: 429 }),
      ),
    );
    renderLogin();
    await logInAs("ada", "guess");
    expect(await screen.findByRole("alert")).toHaveTextContent("too many login attempts (try again in 42 s)");
  });
});
