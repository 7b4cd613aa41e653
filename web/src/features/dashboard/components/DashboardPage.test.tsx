import { screen, within } from "@testing-library/react";
import type { GpuStatus } from "../../../api/types";
import { live } from "../../../lib/live";
import { fakeApi, page } from "../../../test/fakeApi";
import { envelope, renderPage } from "../../../test/render";
import { DashboardPage } from "./DashboardPage";

const T0 = Date.parse("2026-01-01T12:00:00Z");
const times = [0, 5, 10, 15].map((s) => new Date(T0 + s * 1000).toISOString());
const worker = {
  host: "trainer-1",
  pid: 4242,
  queues: ["training"],
  cpu_percent: 37.4,
  host_memory_used: 8e9,
  host_memory_total: 32e9,
  memory_rss: 1e9,
  devices: [],
  seen_at: times[3],
};

function device(index: number, utilization: number[]) {
  return {
    sample: {
      host: "trainer-1",
      index,
      uuid: `GPU-${index}`,
      name: "NVIDIA H200",
      utilization: utilization.at(-1) ?? null,
      memory_used: 40e9,
      memory_total: 141e9,
      temperature: 61,
      power_watts: 300,
      job_id: index === 0 ? "9a8b7c6d-0000-4000-8000-000000000000" : null,
      sampled_at: times[3],
    },
    history: {
      host: "trainer-1",
      index,
      uuid: `GPU-${index}`,
      name: "NVIDIA H200",
      times,
      utilization,
      memory_used: [10e9, 20e9, null, 40e9],
      memory_total: times.map(() => 141e9),
      temperature: [50, 55, 58, 61],
      power_watts: [100, 200, 250, 300],
      job_id: times.map(() => null),
    },
  };
}

const gpus = [device(0, [10, 60, 95, 97]), device(1, [0, 0, 5, 2])];
const withGpus: GpuStatus = {
  available: true,
  reason: null,
  gpus: gpus.map((d) => d.sample),
  history: gpus.map((d) => d.history),
  hosts: [],
  workers: [worker],
};
const withoutGpus: GpuStatus = {
  available: false,
  reason: "NVML is not installed on trainer-1",
  gpus: [],
  history: [],
  hosts: [],
  workers: [worker],
};

const me = (role: string) => ({ id: "u1", username: "ada", email: "a@example.com", full_name: "", system_role: role, active: true, last_login_at: null, version: 1, created_at: times[0], updated_at: times[0] });
const job = { id: "9a8b7c6d-0000-4000-8000-000000000000", project_id: "p-running", name: "big-lm", template: "char-lm", status: "running", progress: 0.5, created_at: times[0], submitted_at: times[0] };

function api(status: GpuStatus, role = "admin") {
  return fakeApi({
    "GET /gpu/status": envelope(status),
    "GET /training/jobs": (call) => (call.query.get("status") === "running" ? page([job]) : page([])),
    "GET /projects": page([{ id: "p-one", name: "one" }, { id: "p-two", name: "two" }]),
    "GET /notifications": page([]),
    "GET /auth/me": envelope(me(role)),
  });
}

describe("the dashboard's compute cards", () => {
  afterEach(() => {
    vi.unstubAllGlobals();
    vi.restoreAllMocks();
  });

  it("show each GPU with its live utilisation, memory and temperature charts", async () => {
    const fake = api(withGpus);
    vi.stubGlobal("fetch", fake.fetch);
    renderPage("/", "/", <DashboardPage />);
    const first = (await screen.findByRole("heading", { name: /GPU 0 · NVIDIA H200/ })).closest("li") as HTMLElement;
    const second = screen.getByRole("heading", { name: /GPU 1 · NVIDIA H200/ }).closest("li") as HTMLElement;
    expect(first).toHaveTextContent("97% busy");
    expect(first).toHaveTextContent("61 °C");
    expect(within(first).getByRole("link", { name: "job" })).toHaveAttribute("href", `/jobs/${job.id}`);
    expect(second).toHaveTextContent("2% busy");
    for (const card of [first, second]) {
      for (const title of ["Utilisation %", "Memory used (GB)", "Temperature °C"]) {
        const chart = await within(card).findByRole("img", { name: title });
        // uPlot drew into it: its own root with a canvas, sized to the card.
        await vi.waitFor(() => expect(chart.querySelector(".uplot canvas")).not.toBeNull());
      }
    }
    expect(fake.sent("GET", "/gpu/status")[0].query.get("history")).toBe("true");
    expect(screen.queryByText("No GPU on this worker")).not.toBeInTheDocument();
  });

  it("say plainly when there is no GPU, with the workers' CPU and memory", async () => {
    vi.stubGlobal("fetch", api(withoutGpus).fetch);
    renderPage("/", "/", <DashboardPage />);
    expect(await screen.findByRole("heading", { name: "No GPU on this worker" })).toBeInTheDocument();
    expect(screen.getByText("NVML is not installed on trainer-1")).toBeInTheDocument();
    expect(screen.getByText("CPU 37%")).toBeInTheDocument();
    expect(screen.getByText(/Memory 8(\.0)? GB of 32(\.0)? GB/)).toBeInTheDocument();
    expect(screen.queryByRole("img", { name: "Utilisation %" })).not.toBeInTheDocument();
  });
});

describe("the dashboard's live jobs", () => {
  afterEach(() => {
    vi.unstubAllGlobals();
    vi.restoreAllMocks();
  });

  it("follow the user's projects and their jobs' projects when they are not an admin", async () => {
    const hold = vi.spyOn(live, "hold");
    vi.stubGlobal("fetch", api(withoutGpus, "user").fetch);
    renderPage("/", "/", <DashboardPage />);
    expect(await screen.findByText("big-lm")).toBeInTheDocument();
    expect(await screen.findByText("No notifications.")).toBeInTheDocument();
    await vi.waitFor(() => expect(hold.mock.calls.map(([channel]) => channel)).toEqual(expect.arrayContaining(["project:p-running", "project:p-one", "project:p-two"])));
    expect(hold.mock.calls.map(([channel]) => channel)).not.toContain("admin");
  });

  it("leave admins on the admin channel alone", async () => {
    const hold = vi.spyOn(live, "hold");
    vi.stubGlobal("fetch", api(withoutGpus, "admin").fetch);
    renderPage("/", "/", <DashboardPage />);
    expect(await screen.findByText("big-lm")).toBeInTheDocument();
    expect(await screen.findByText("No notifications.")).toBeInTheDocument();
    expect(hold.mock.calls.map(([channel]) => channel).filter((c) => c.startsWith("project:"))).toEqual([]);
  });
});
