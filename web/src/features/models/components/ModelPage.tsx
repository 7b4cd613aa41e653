import { useState } from "react";
import { Link, useParams } from "react-router";
import { ErrorMessage, Loading, StatusBadge } from "../../../components/Feedback";
import { downloadFile } from "../../../lib/download";
import { formatBytes, formatNumber, formatTime } from "../../../lib/format";
import { useLiveChannel } from "../../../lib/useLive";
import { useModel, useUpdateModel } from "../api/models";

const STAGES = ["none", "staging", "production", "archived"] as const;

export function ModelPage() {
  const { modelId = "" } = useParams();
  const model = useModel(modelId);
  useLiveChannel(model.data ? `project:${model.data.project_id}` : null);
  const update = useUpdateModel(modelId);
  const [downloadError, setDownloadError] = useState<unknown>(null);
  if (model.error) return <ErrorMessage error={model.error} />;
  if (!model.data) return <Loading what="the model" />;
  const m = model.data;
  const card = m.card as Record<string, unknown>;

  return (
    <section>
      <p className="crumbs">
        <Link to={`/projects/${m.project_id}?tab=models`}>Project</Link> / model
      </p>
      <div className="page-head">
        <h1>
          {m.name} <StatusBadge status={m.stage} />
        </h1>
        <div className="actions">
          <Link className="button" to={`/inference?project=${m.project_id}&model=${m.id}`}>
            Try it
          </Link>
          <button
            type="button"
            onClick={() => {
              setDownloadError(null);
              downloadFile(`/models/${m.id}/download`, `${m.name}.safetensors`).catch(setDownloadError);
            }}
          >
            Download
          </button>
        </div>
      </div>
      <ErrorMessage error={downloadError ?? update.error} />
      <div className="field inline">
        <label htmlFor="model-stage">Stage</label>
        <select id="model-stage" value={m.stage} disabled={update.isPending} onChange={(e) => update.mutate({ stage: e.target.value as (typeof STAGES)[number] })}>
          {STAGES.map((stage) => (
            <option key={stage}>{stage}</option>
          ))}
        </select>
      </div>
      <div className="columns">
        <div>
          <h2>Card</h2>
          <dl className="facts">
            <dt>Description</dt>
            <dd>{String(card.description ?? "") || "–"}</dd>
            <dt>Intended use</dt>
            <dd>{String(card.intended_use ?? "") || "–"}</dd>
            <dt>Limitations</dt>
            <dd>{String(card.limitations ?? "") || "–"}</dd>
            <dt>Template</dt>
            <dd>{String(card.template ?? "–")}</dd>
            <dt>Training job</dt>
            <dd>{m.source_job_id ? <Link to={`/jobs/${m.source_job_id}`}>{m.source_job_id.slice(0, 8)}</Link> : "–"}</dd>
            <dt>Dataset version</dt>
            <dd className="mono">{String(card.training_dataset_version ?? "–").slice(0, 12)}</dd>
            <dt>Framework</dt>
            <dd>{m.framework}</dd>
            <dt>Size</dt>
            <dd>{formatBytes(m.size)}</dd>
            <dt>Registered</dt>
            <dd>{formatTime(m.created_at)}</dd>
          </dl>
          {card.hyperparameters !== undefined && (
            <details>
              <summary>Hyperparameters</summary>
              <pre>{JSON.stringify(card.hyperparameters, null, 2)}</pre>
            </details>
          )}
        </div>
        <div>
          <h2>Metrics</h2>
          <table>
            <tbody>
              {Object.entries(m.metrics).map(([name, value]) => (
                <tr key={name}>
                  <th scope="row">{name}</th>
                  <td>{formatNumber(value)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </div>
    </section>
  );
}
