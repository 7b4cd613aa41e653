import { ApiError, request } from "./client";
import { getSession, setSession } from "./session";

function reply(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

const tokens = (access: string, refresh: string, expiresIn = 900) => ({
  access_token: access,
  refresh_token: refresh,
  token_type: "bearer",
  expires_in: expiresIn,
});

describe("the API client", () => {
  afterEach(() => {
    vi.unstubAllGlobals();
    setSession(null);
  });

  it("unwraps the envelope's data", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => reply(200, { success: true, data: { id: "p1" }, error: null, meta: null })));
    await expect(request("/projects/p1")).resolves.toEqual({ id: "p1" });
  });

  it("turns a 422 into an error that names its fields", async () => {
    const body = {
      success: false,
      data: null,
      error: "name: Expected `str` of length >= 1",
      meta: { code: "validation_error", fields: [{ field: "name", message: "too short" }, { field: "hyperparameters.epochs", message: "too big" }] },
    };
    vi.stubGlobal("fetch", vi.fn(async () => reply(422, body)));
    const error = await request("/projects", { method: "POST", body: {} }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).code).toBe("validation_error");
    expect((error as ApiError).fields).toEqual({ name: "too short", epochs: "too big" });
  });

  it("refreshes an expired access token once, for requests made together", async () => {
    setSession(tokens("old", "refresh-1", 0));
    const calls: string[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string, init?: RequestInit) => {
        calls.push(`${url} ${new Headers(init?.headers).get("authorization") ?? ""}`.trim());
        if (url.endsWith("/auth/refresh")) {
          expect(JSON.parse(String(init?.body))).toEqual({ refresh_token: "refresh-1" });
          return reply(200, { success: true, data: tokens("new", "refresh-2") });
        }
        return reply(200, { success: true, data: [] });
      }),
    );
    await Promise.all([request("/projects"), request("/models")]);
    expect(calls.filter((c) => c.includes("/auth/refresh"))).toHaveLength(1);
    expect(calls.filter((c) => !c.includes("/auth/refresh"))).toEqual(["/api/v2/projects Bearer new", "/api/v2/models Bearer new"]);
    expect(getSession()?.refreshToken).toBe("refresh-2");
  });

  it("retries once with a new token after a 401, and ends the session when refresh is refused", async () => {
    setSession(tokens("revoked", "refresh-1"));
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string) =>
        url.endsWith("/auth/refresh")
          ? reply(401, { success: false, error: "refresh token reused", meta: { code: "not_authenticated" } })
          : reply(401, { success: false, error: "the access token is invalid or expired", meta: { code: "not_authenticated" } }),
      ),
    );
    await expect(request("/projects")).rejects.toThrow("the access token is invalid or expired");
    expect(getSession()).toBeNull();
  });
});
