import { useRef, useState, type DragEvent, type FormEvent } from "react";
import { useNavigate } from "react-router";
import { ErrorMessage, fieldError, ProgressBar } from "../../../components/Feedback";
import { Field } from "../../../components/Field";
import { formatBytes } from "../../../lib/format";
import { useUpload } from "../api/datasets";

interface DatasetUploadProps {
  projectId: string;
  // Given: the file becomes a new version of this dataset.
  datasetId?: string;
  parentVersion?: string | null;
}

export function DatasetUpload({ projectId, datasetId, parentVersion }: DatasetUploadProps) {
  const upload = useUpload();
  const navigate = useNavigate();
  const input = useRef<HTMLInputElement>(null);
  const [file, setFile] = useState<File | null>(null);
  const [name, setName] = useState("");
  const [message, setMessage] = useState("");
  const [progress, setProgress] = useState(0);
  const [dragging, setDragging] = useState(false);

  function choose(chosen: File | undefined) {
    if (!chosen) return;
    setFile(chosen);
    if (!name) setName(chosen.name.replace(/\.[^.]+$/, ""));
  }

  function drop(event: DragEvent) {
    event.preventDefault();
    setDragging(false);
    choose(event.dataTransfer.files[0]);
  }

  function submit(event: FormEvent) {
    event.preventDefault();
    if (!file) return;
    setProgress(0);
    const fields: Record<string, string> = datasetId
      ? { message, parent_version: parentVersion ?? "" }
      : { project_id: projectId, name, message };
    upload.mutate(
      { file, fields, path: datasetId ? `/datasets/${datasetId}/versions` : "/datasets", onProgress: setProgress },
      {
        onSuccess: (dataset) => {
          setFile(null);
          setMessage("");
          if (!datasetId) navigate(`/datasets/${dataset.id}`);
        },
      },
    );
  }

  return (
    <form className="card form" onSubmit={submit}>
      <h2>{datasetId ? "Upload a new version" : "Upload a dataset"}</h2>
      <div
        className={`dropzone${dragging ? " dragging" : ""}`}
        onDragOver={(event) => {
          event.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={drop}
      >
        <p>{file ? `${file.name} (${formatBytes(file.size)})` : "Drop a CSV, JSON Lines, Parquet or text file here, or"}</p>
        <label className="button">
          Choose file
          <input ref={input} type="file" className="sr-only" onChange={(e) => choose(e.target.files?.[0])} />
        </label>
        {fieldError(upload.error, "file") && (
          <small className="field-error" role="alert">
            {fieldError(upload.error, "file")}
          </small>
        )}
      </div>
      {!datasetId && <Field label="Dataset name" required value={name} error={fieldError(upload.error, "name")} onChange={(e) => setName(e.target.value)} />}
      <Field label="Commit message" value={message} error={fieldError(upload.error, "message")} onChange={(e) => setMessage(e.target.value)} />
      {upload.isPending && <ProgressBar value={progress} label="Upload progress" />}
      <ErrorMessage error={upload.error} />
      <button type="submit" className="primary" disabled={!file || upload.isPending}>
        Upload
      </button>
    </form>
  );
}
