import { useState } from "react";
import { Link, useNavigate, useParams, useSearchParams } from "react-router";
import { Empty, ErrorMessage, Loading, StatusBadge } from "../../../components/Feedback";
import { formatNumber, formatTime } from "../../../lib/format";
import { useLiveChannel } from "../../../lib/useLive";
import { DatasetUpload } from "../../datasets/components/DatasetUpload";
import { useDatasets } from "../../datasets/api/datasets";
import { useModels } from "../../models/api/models";
import { JobTable } from "../../training/components/JobTable";
import { useJobs } from "../../training/api/training";
import { useCreateExperiment, useExperiments } from "../api/experiments";
import { useArchiveProject, useDeleteProject, useProject, useProjectPermission, useUpdateProject } from "../api/projects";
import { ExperimentForm } from "./ExperimentForm";
import { HistoryTimeline } from "./HistoryTimeline";
import { Members } from "./Members";
import { ProjectForm } from "./ProjectForm";

const TABS = ["datasets", "jobs", "models", "experiments", "members", "history"] as const;
type Tab = (typeof TABS)[number];

export function ProjectPage() {
  const { projectId = "" } = useParams();
  useLiveChannel(`project:${projectId}`);
  const project = useProject(projectId);
  const [params, setParams] = useSearchParams();
  const tab = (TABS as readonly string[]).includes(params.get("tab") ?? "") ? (params.get("tab") as Tab) : "datasets";
  const [editing, setEditing] = useState(false);
  const update = useUpdateProject(projectId);
  const archive = useArchiveProject(projectId);
  const remove = useDeleteProject(projectId);
  const navigate = useNavigate();

  if (project.error) return <ErrorMessage error={project.error} />;
  if (!project.data) return <Loading what="the project" />;
  const p = project.data;

  return (
    <section>
      <div className="page-head">
        <h1>
          {p.name} <StatusBadge status={p.status} />
        </h1>
        <div className="actions">
          <button type="button" onClick={() => setEditing(!editing)} aria-expanded={editing}>
            Edit
          </button>
          {p.status === "active" && (
            <button type="button" onClick={() => archive.mutate()} disabled={archive.isPending}>
              Archive
            </button>
          )}
          <button
            type="button"
            className="danger"
            onClick={() => {
              if (window.confirm(`Delete the project ${p.name}? Its history is kept in the audit log.`))
                remove.mutate(undefined, { onSuccess: () => navigate("/projects") });
            }}
          >
            Delete
          </button>
        </div>
      </div>
      <ErrorMessage error={archive.error ?? remove.error} />
      <p>{p.description}</p>
      <p className="muted">
        Created {formatTime(p.created_at)} · tags: {p.tags.join(", ") || "none"}
      </p>
      {editing && (
        <div className="card">
          <ProjectForm
            initial={p}
            submitLabel="Save"
            pending={update.isPending}
            error={update.error}
            onSubmit={(values) => update.mutate(values, { onSuccess: () => setEditing(false) })}
          />
        </div>
      )}
      <div className="tabs" role="tablist" aria-label="Project sections">
        {TABS.map((name) => (
          <button
            key={name}
            type="button"
            role="tab"
            aria-selected={tab === name}
            onClick={() => setParams({ tab: name }, { replace: true })}
          >
            {name[0].toUpperCase() + name.slice(1)}
          </button>
        ))}
      </div>
      <div role="tabpanel" aria-label={tab}>
        {tab === "datasets" && <ProjectDatasets projectId={projectId} />}
        {tab === "jobs" && <ProjectJobs projectId={projectId} />}
        {tab === "models" && <ProjectModels projectId={projectId} />}
        {tab === "experiments" && <ProjectExperiments projectId={projectId} members={p.members} />}
        {tab === "members" && <Members project={p} />}
        {tab === "history" && <HistoryTimeline projectId={projectId} />}
      </div>
    </section>
  );
}

function ProjectDatasets({ projectId }: { projectId: string }) {
  const datasets = useDatasets(projectId);
  return (
    <>
      <DatasetUpload projectId={projectId} />
      <ErrorMessage error={datasets.error} />
      {datasets.data?.items.length === 0 && <Empty>No datasets yet: upload one above.</Empty>}
      <ul className="list">
        {datasets.data?.items.map((dataset) => (
          <li key={dataset.id}>
            <Link to={`/datasets/${dataset.id}`}>{dataset.name}</Link>{" "}
            <span className="muted">
              {dataset.versions} version{dataset.versions === 1 ? "" : "s"} · updated {formatTime(dataset.updated_at)}
            </span>
          </li>
        ))}
      </ul>
    </>
  );
}

function ProjectJobs({ projectId }: { projectId: string }) {
  const jobs = useJobs({ project_id: projectId });
  return (
    <>
      <p>
        <Link className="button primary" to={`/jobs/new?project=${projectId}`}>
          Train a model
        </Link>
      </p>
      <ErrorMessage error={jobs.error} />
      {jobs.data && <JobTable jobs={jobs.data.items} />}
    </>
  );
}

function ProjectModels({ projectId }: { projectId: string }) {
  const models = useModels(projectId);
  if (models.data?.items.length === 0) return <Empty>No models yet: a finished training job registers one.</Empty>;
  return (
    <ul className="list">
      {models.data?.items.map((model) => (
        <li key={model.id}>
          <Link to={`/models/${model.id}`}>{model.name}</Link> <StatusBadge status={model.stage} />
        </li>
      ))}
    </ul>
  );
}

function ProjectExperiments({ projectId, members }: { projectId: string; members: Record<string, string> }) {
  const experiments = useExperiments(projectId);
  const canWrite = useProjectPermission(members, "experiment:write");
  const create = useCreateExperiment();
  const [creating, setCreating] = useState(false);
  const navigate = useNavigate();
  return (
    <>
      {canWrite && (
        <p>
          <button type="button" className="primary" aria-expanded={creating} onClick={() => setCreating(!creating)}>
            New experiment
          </button>
        </p>
      )}
      {creating && canWrite && (
        <div className="card">
          <h2>New experiment</h2>
          <ExperimentForm
            projectId={projectId}
            submitLabel="Create experiment"
            pending={create.isPending}
            error={create.error}
            onSubmit={(values) =>
              create.mutate({ project_id: projectId, ...values }, { onSuccess: (experiment) => navigate(`/experiments/${experiment.id}`) })
            }
          />
        </div>
      )}
      <ErrorMessage error={experiments.error} />
      {experiments.data?.items.length === 0 && <Empty>No experiments in this project yet.</Empty>}
      {experiments.data && experiments.data.items.length > 0 && (
        <div className="scroll">
          <table>
            <caption className="sr-only">Experiments</caption>
            <thead>
              <tr>
                <th scope="col">Experiment</th>
                <th scope="col">Status</th>
                <th scope="col">Task</th>
                <th scope="col">Metrics</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {experiments.data.items.map((experiment) => (
                <tr key={experiment.id}>
                  <td>
                    <Link to={`/experiments/${experiment.id}`}>{experiment.name}</Link>
                  </td>
                  <td>
                    <StatusBadge status={experiment.status} />
                  </td>
                  <td>{experiment.task_type ?? "–"}</td>
                  <td>
                    {Object.entries(experiment.metrics)
                      .slice(0, 3)
                      .map(([name, value]) => `${name} ${formatNumber(value)}`)
                      .join(" · ") || "–"}
                  </td>
                  <td>{formatTime(experiment.updated_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
