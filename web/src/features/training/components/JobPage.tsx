import { useMemo } from "react";
import { Link, useParams } from "react-router";
import type { LossCurve } from "../../../api/types";
import { ErrorMessage, Loading, ProgressBar, StatusBadge } from "../../../components/Feedback";
import { LineChart, type ChartSeries } from "../../../components/LineChart";
import { formatDuration, formatNumber, formatTime } from "../../../lib/format";
import { useLiveChannel } from "../../../lib/useLive";
import { useCancelJob, useJob, useJobLogs, useJobStatus, useLossCurve } from "../api/training";

const COLORS = ["#3451b2", "#d9480f", "#2b8a3e", "#862e9c"];
const FINISHED = ["succeeded", "failed", "cancelled"];

function curveData(curve: LossCurve | undefined): { x: number[]; series: ChartSeries[] } {
  const names = Object.keys(curve?.series ?? {}).sort();
  const steps = [...new Set(names.flatMap((name) => curve?.series[name].steps ?? []))].sort((a, b) => a - b);
  const series = names.map((name, index) => {
    const byStep = new Map(curve?.series[name].steps.map((step, i) => [step, curve.series[name].values[i]]));
    return { label: name, color: COLORS[index % COLORS.length], values: steps.map((step) => byStep.get(step) ?? null) };
  });
  return { x: steps, series };
}

export function JobPage() {
  const { jobId = "" } = useParams();
  useLiveChannel(`job:${jobId}`);
  const job = useJob(jobId);
  const status = useJobStatus(jobId);
  const curve = useLossCurve(jobId);
  const logs = useJobLogs(jobId);
  const cancel = useCancelJob(jobId);
  const chart = useMemo(() => curveData(curve.data), [curve.data]);

  if (job.error) return <ErrorMessage error={job.error} />;
  if (!job.data) return <Loading what="the job" />;
  const j = job.data;
  const s = status.data;
  const state = s?.status ?? j.status;
  const finished = FINISHED.includes(state);

  return (
    <section>
      <p className="crumbs">
        <Link to={`/projects/${j.project_id}?tab=jobs`}>Project</Link> / job
      </p>
      <div className="page-head">
        <h1>
          {j.name} <StatusBadge status={state} />
        </h1>
        {!finished && (
          <button type="button" className="danger" disabled={cancel.isPending || s?.cancel_requested} onClick={() => cancel.mutate()}>
            {s?.cancel_requested ? "Cancelling…" : "Cancel job"}
          </button>
        )}
      </div>
      <ErrorMessage error={cancel.error} />
      <ProgressBar value={state === "succeeded" ? 1 : (s?.progress ?? j.progress)} label="Job progress" />
      <dl className="facts">
        <dt>Status</dt>
        <dd data-testid="job-status">{state}</dd>
        <dt>Template</dt>
        <dd>{j.template}</dd>
        <dt>Epoch / step</dt>
        <dd>
          {s?.epoch ?? j.epoch} / {s?.step ?? j.step}
          {s?.total_steps ? ` of ${s.total_steps}` : ""}
        </dd>
        <dt>ETA</dt>
        <dd>{finished ? "–" : formatDuration(s?.eta_s)}</dd>
        <dt>Speed</dt>
        <dd>{s?.samples_per_second ? `${formatNumber(s.samples_per_second, 3)} samples/s` : "–"}</dd>
        <dt>Attempt</dt>
        <dd>{j.attempt}</dd>
        <dt>Started</dt>
        <dd>{formatTime(j.started_at)}</dd>
        <dt>Finished</dt>
        <dd>{formatTime(j.finished_at)}</dd>
        {j.model_id && (
          <>
            <dt>Model</dt>
            <dd>
              <Link to={`/models/${j.model_id}`}>open the registered model</Link>
            </dd>
          </>
        )}
      </dl>
      {j.error && (
        <div className="problems" role="alert">
          <h2>Error</h2>
          <p>{j.error}</p>
          {j.traceback && <pre>{j.traceback}</pre>}
        </div>
      )}
      <div className="columns">
        <div>
          {chart.x.length > 0 ? (
            <LineChart title="Loss" x={chart.x} series={chart.series} height={260} />
          ) : (
            <p className="muted" role="status">
              The loss curve appears with the first metrics.
            </p>
          )}
          <h2>Latest metrics</h2>
          <dl className="facts">
            {Object.entries(s?.latest_metrics ?? j.latest_metrics ?? {}).map(([name, value]) => (
              <div key={name} className="fact">
                <dt>{name}</dt>
                <dd>{formatNumber(value)}</dd>
              </div>
            ))}
          </dl>
        </div>
        <div>
          <h2>Log</h2>
          <ol className="log" aria-label="Log lines" aria-live="polite">
            {logs.data?.items.map((line) => (
              <li key={line.seq} className={`log-${line.level}`}>
                <time className="muted">{new Date(line.time).toLocaleTimeString()}</time> {line.message}
              </li>
            ))}
          </ol>
        </div>
      </div>
    </section>
  );
}
