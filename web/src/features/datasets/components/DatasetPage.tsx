import { useState } from "react";
import { Link, useParams } from "react-router";
import { ErrorMessage, Loading } from "../../../components/Feedback";
import { downloadFile } from "../../../lib/download";
import { formatBytes, formatTime } from "../../../lib/format";
import { useLiveChannel } from "../../../lib/useLive";
import { useDataset, useDatasetVersion } from "../api/datasets";
import { DatasetUpload } from "./DatasetUpload";
import { QualityReport, type Report } from "./QualityReport";

export function DatasetPage() {
  const { datasetId = "" } = useParams();
  const dataset = useDataset(datasetId);
  useLiveChannel(dataset.data ? `project:${dataset.data.project_id}` : null);
  const [chosen, setChosen] = useState<string | null>(null);
  const selected = chosen ?? dataset.data?.latest_version ?? null;
  const version = useDatasetVersion(datasetId, selected);
  const [downloadError, setDownloadError] = useState<unknown>(null);

  if (dataset.error) return <ErrorMessage error={dataset.error} />;
  if (!dataset.data) return <Loading what="the dataset" />;
  const d = dataset.data;
  const chain = [...d.versions].reverse();

  return (
    <section>
      <p className="crumbs">
        <Link to={`/projects/${d.project_id}`}>Project</Link> / dataset
      </p>
      <h1>{d.name}</h1>
      <div className="columns">
        <div>
          <h2>Versions</h2>
          <ol className="chain">
            {chain.map((v) => (
              <li key={v.version} className={v.version === selected ? "current" : undefined}>
                <button type="button" className="link" aria-pressed={v.version === selected} onClick={() => setChosen(v.version)}>
                  <span className="mono">{v.version.slice(0, 12)}</span>
                </button>
                <span>{v.message || <em className="muted">no message</em>}</span>
                <small className="muted">
                  {v.filename} · {formatBytes(v.size)} · {v.rows ?? "?"} rows · {formatTime(v.created_at)}
                  {v.parent ? ` · after ${v.parent.slice(0, 8)}` : " · first"}
                </small>
              </li>
            ))}
          </ol>
          <DatasetUpload projectId={d.project_id} datasetId={d.id} parentVersion={d.latest_version} />
        </div>
        <div>
          <div className="page-head">
            <h2>Quality report</h2>
            {selected && (
              <button
                type="button"
                onClick={() => {
                  setDownloadError(null);
                  downloadFile(`/datasets/${d.id}/versions/${selected}/download`, d.name).catch(setDownloadError);
                }}
              >
                Download
              </button>
            )}
          </div>
          <ErrorMessage error={downloadError ?? version.error} />
          {version.data?.quality ? (
            <QualityReport report={version.data.quality as unknown as Report} />
          ) : (
            <p role="status" className="muted">
              {version.data ? "Analysing this version… the report appears here when it is ready." : "Loading…"}
            </p>
          )}
        </div>
      </div>
    </section>
  );
}
