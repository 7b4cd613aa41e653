import { useQueryClient } from "@tanstack/react-query";
import { lazy, Suspense, useEffect } from "react";
import { Link } from "react-router";
import type { GpuStatus } from "../../../api/types";
import { ErrorMessage, Loading } from "../../../components/Feedback";
import { formatBytes, formatTime } from "../../../lib/format";
import { useLiveChannel, useLiveChannels, useLiveEvents } from "../../../lib/useLive";
import { useMe } from "../../auth/api/session";
import { useNotifications } from "../../notifications/api/notifications";
import { NotificationItem } from "../../notifications/components/NotificationItem";
import { useProjects } from "../../projects/api/projects";
import { useJobs } from "../../training/api/training";
import { JobTable } from "../../training/components/JobTable";
import { useGpuStatus } from "../api/gpu";

// A stream takes at most 32 channels; `gpu` and `notifications` are two of them.
const MAX_PROJECT_CHANNELS = 30;

// The chart library is loaded only where there are GPUs to chart.
const LineChart = lazy(async () => ({ default: (await import("../../../components/LineChart")).LineChart }));

function Gpus({ status }: { status: GpuStatus }) {
  if (!status.available || status.gpus.length === 0) {
    return (
      <div className="card">
        <h2>No GPU on this worker</h2>
        <p className="muted">{status.reason ?? "No NVIDIA GPU was found; jobs train on the CPU."}</p>
        <ul className="cards">
          {status.workers.map((worker) => (
            <li key={`${worker.host}:${worker.pid}`} className="stat">
              <strong>
                {worker.host} · {worker.queues.join(", ")}
              </strong>
              <span>CPU {worker.cpu_percent.toFixed(0)}%</span>
              <span>
                Memory {formatBytes(worker.host_memory_used)} of {formatBytes(worker.host_memory_total)}
              </span>
            </li>
          ))}
        </ul>
      </div>
    );
  }
  return (
    <ul className="cards">
      {status.gpus.map((gpu) => {
        const history = status.history?.find((h) => h.host === gpu.host && h.index === gpu.index);
        const x = history?.times.map((t) => Date.parse(t) / 1000) ?? [];
        return (
          <li key={`${gpu.host}:${gpu.index}`} className="card">
            <h2>
              GPU {gpu.index} · {gpu.name ?? "unknown"} <small className="muted">{gpu.host}</small>
            </h2>
            <p>
              {gpu.utilization ?? "–"}% busy · {formatBytes(gpu.memory_used)} of {formatBytes(gpu.memory_total)} · {gpu.temperature ?? "–"} °C
              {gpu.job_id && (
                <>
                  {" "}· <Link to={`/jobs/${gpu.job_id}`}>job</Link>
                </>
              )}
            </p>
            {history && (
              <Suspense fallback={<p className="muted">Loading charts…</p>}>
                <LineChart title="Utilisation %" x={x} xTime height={120} yRange={[0, 100]} series={[{ label: "util", color: "#3451b2", values: history.utilization }]} />
                <LineChart
                  title="Memory used (GB)"
                  x={x}
                  xTime
                  height={120}
                  series={[{ label: "memory", color: "#2b8a3e", values: history.memory_used.map((v) => (v === null ? null : v / 1e9)) }]}
                />
                <LineChart title="Temperature °C" x={x} xTime height={120} series={[{ label: "temp", color: "#d9480f", values: history.temperature }]} />
              </Suspense>
            )}
          </li>
        );
      })}
    </ul>
  );
}

export function DashboardPage() {
  const client = useQueryClient();
  // When the landing page first shows, for the browser tests' (and anyone's) timing.
  useEffect(() => {
    performance.mark("dashboard-rendered");
  }, []);
  useLiveChannel("gpu");
  // Each GPU sample on the stream brings the status and history up to date.
  useLiveEvents((event) => {
    if (event.kind === "gpu") void client.invalidateQueries({ queryKey: ["gpu"] });
  });
  const gpu = useGpuStatus();
  const running = useJobs({ status: "running" });
  const queued = useJobs({ status: "pending" });
  const projects = useProjects({ status: "active", limit: MAX_PROJECT_CHANNELS });
  const me = useMe();
  // Admins get every event on the `admin` channel (see LiveBridge); anyone else follows the
  // projects the jobs shown here belong to, and their active projects, where new jobs appear.
  const followed =
    me.data && me.data.system_role !== "admin"
      ? [...new Set([...running.data?.items ?? [], ...queued.data?.items ?? []].map((job) => job.project_id).concat(projects.data?.items.map((p) => p.id) ?? []))]
          .slice(0, MAX_PROJECT_CHANNELS)
          .map((id) => `project:${id}`)
      : [];
  useLiveChannels(followed);
  const unread = useNotifications(true);
  const notifications = useNotifications();

  return (
    <section>
      <h1>Dashboard</h1>
      <ul className="counts">
        <li>
          <Link to="/projects">
            <strong>{projects.data?.meta.total ?? "–"}</strong> active projects
          </Link>
        </li>
        <li>
          <Link to="/jobs?status=running">
            <strong>{running.data?.meta.total ?? "–"}</strong> running jobs
          </Link>
        </li>
        <li>
          <Link to="/jobs?status=pending">
            <strong>{queued.data?.meta.total ?? "–"}</strong> queued jobs
          </Link>
        </li>
        <li>
          <Link to="/notifications">
            <strong>{unread.data?.meta.total ?? "–"}</strong> unread notifications
          </Link>
        </li>
      </ul>
      <h2>Compute</h2>
      <ErrorMessage error={gpu.error} />
      {gpu.data ? <Gpus status={gpu.data} /> : <Loading what="GPU status" />}
      <h2>Running and queued jobs</h2>
      <JobTable jobs={[...(running.data?.items ?? []), ...(queued.data?.items ?? [])]} />
      <h2>Recent notifications</h2>
      <ul className="notifications">
        {notifications.data?.items.slice(0, 5).map((n) => (
          <NotificationItem key={n.id} notification={n} time={formatTime(n.created_at)} />
        ))}
      </ul>
      {notifications.data?.items.length === 0 && <p className="empty">No notifications.</p>}
    </section>
  );
}
