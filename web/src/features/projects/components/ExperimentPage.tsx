import { useState } from "react";
import { Link, useParams } from "react-router";
import { Empty, ErrorMessage, Loading, StatusBadge } from "../../../components/Feedback";
import { formatNumber, formatTime } from "../../../lib/format";
import { useLiveChannel } from "../../../lib/useLive";
import { useJobs } from "../../training/api/training";
import { JobTable } from "../../training/components/JobTable";
import { useExperiment, useStartExperiment, useUpdateExperiment } from "../api/experiments";
import { useUserNames } from "../../../api/directory";
import { useProject, useProjectPermission } from "../api/projects";
import { ExperimentForm } from "./ExperimentForm";

// An experiment that is running, or archived, does not start (the API refuses it too).
const STARTABLE = new Set(["draft", "completed", "failed", "cancelled"]);

export function ExperimentPage() {
  const { experimentId = "" } = useParams();
  const experiment = useExperiment(experimentId);
  const projectId = experiment.data?.project_id ?? "";
  // The project's channel carries the experiment's events and those of the jobs it starts.
  useLiveChannel(projectId ? `project:${projectId}` : null);
  // Its own jobs, however many the project has (the project's id keeps access checked per project).
  const jobs = useJobs({ project_id: projectId, experiment_id: experimentId });
  const update = useUpdateExperiment(experimentId);
  const start = useStartExperiment(experimentId);
  const [editing, setEditing] = useState(false);
  const project = useProject(projectId);
  const canWrite = useProjectPermission(project.data?.members, "experiment:write");
  const creator = experiment.data?.created_by;
  const names = useUserNames(creator ? [creator] : []);

  if (experiment.error) return <ErrorMessage error={experiment.error} />;
  if (!experiment.data) return <Loading what="the experiment" />;
  const e = experiment.data;
  const ownJobs = projectId ? jobs.data?.items ?? [] : [];
  const metrics = Object.entries(e.metrics);

  return (
    <section>
      <p className="crumbs">
        <Link to={`/projects/${e.project_id}?tab=experiments`}>Project</Link> / experiment
      </p>
      <div className="page-head">
        <h1>
          {e.name} <StatusBadge status={e.status} />
        </h1>
        <div className="actions">
          {canWrite && (
            <>
              <button type="button" className="primary" disabled={!STARTABLE.has(e.status) || start.isPending} onClick={() => start.mutate()}>
                Start training
              </button>
              <button type="button" onClick={() => setEditing(!editing)} aria-expanded={editing}>
                Edit
              </button>
              {e.status !== "archived" && e.status !== "running" && (
                <button type="button" disabled={update.isPending} onClick={() => update.mutate({ status: "archived" })}>
                  Archive
                </button>
              )}
            </>
          )}
          <Link className="button" to={`/admin/history/experiment/${e.id}`}>
            History
          </Link>
        </div>
      </div>
      {/* A start the API refused names the config key at fault (config.template, …). */}
      <ErrorMessage error={start.error ?? (editing ? null : update.error)} />
      {e.description && <p>{e.description}</p>}
      {editing && canWrite && (
        <div className="card">
          <h2>Edit the experiment</h2>
          <ExperimentForm
            projectId={e.project_id}
            initial={e}
            submitLabel="Save experiment"
            pending={update.isPending}
            error={update.error}
            onSubmit={(values) => update.mutate(values, { onSuccess: () => setEditing(false) })}
          />
        </div>
      )}
      <div className="columns">
        <div>
          <h2>Setup</h2>
          <dl className="facts">
            <dt>Status</dt>
            <dd data-testid="experiment-status">{e.status}</dd>
            <dt>Task type</dt>
            <dd>{e.task_type ?? "–"}</dd>
            <dt>Base model</dt>
            <dd>{e.base_model ? <Link to={`/models/${e.base_model}`}>{e.base_model.slice(0, 8)}</Link> : "none"}</dd>
            <dt>Created</dt>
            <dd>
              {formatTime(e.created_at)} by {names.data?.[e.created_by]?.username ?? <span className="mono">{e.created_by.slice(0, 8)}</span>}
            </dd>
            <dt>Updated</dt>
            <dd>
              {formatTime(e.updated_at)} · v{e.version}
            </dd>
          </dl>
          <h3>Config</h3>
          <pre aria-label="Config">{JSON.stringify(e.config, null, 2)}</pre>
        </div>
        <div>
          <h2>Metrics</h2>
          {metrics.length === 0 ? (
            <Empty>No metrics yet: they arrive when its training job finishes.</Empty>
          ) : (
            <table>
              <caption className="sr-only">Metrics</caption>
              <tbody>
                {metrics.map(([name, value]) => (
                  <tr key={name}>
                    <th scope="row">{name}</th>
                    <td>{formatNumber(value)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </div>
      </div>
      <h2>Training jobs</h2>
      <ErrorMessage error={jobs.error} />
      {jobs.data && <JobTable jobs={ownJobs} />}
    </section>
  );
}
