import { useEffect, useState, type FormEvent } from "react";
import { useNavigate, useSearchParams } from "react-router";
import { ErrorMessage, fieldError, Loading } from "../../../components/Feedback";
import { Field } from "../../../components/Field";
import { useDataset, useDatasets } from "../../datasets/api/datasets";
import { useProjects } from "../../projects/api/projects";
import { useSubmitJob, useTemplates } from "../api/training";
import { defaults, editHyperparameter, validate, type FormValues } from "../hyperparameters";
import { HyperparameterFields, Select } from "./FormControls";

const PRIORITIES = [
  [0, "critical"],
  [1, "high"],
  [5, "normal"],
  [9, "low"],
] as const;

export function NewJobPage() {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const templates = useTemplates();
  const projects = useProjects({ status: "active", limit: 100 });
  const [projectId, setProjectId] = useState(params.get("project") ?? "");
  const datasets = useDatasets(projectId);
  const [templateName, setTemplateName] = useState("");
  const [datasetId, setDatasetId] = useState("");
  const dataset = useDataset(datasetId);
  const [datasetVersion, setDatasetVersion] = useState("");
  const [priority, setPriority] = useState("5");
  const [name, setName] = useState("");
  const [values, setValues] = useState<FormValues>({});
  const [errors, setErrors] = useState<Record<string, string>>({});
  const submit = useSubmitJob();
  const template = templates.data?.find((t) => t.name === templateName);

  useEffect(() => {
    if (!projectId && projects.data?.items[0]) setProjectId(projects.data.items[0].id);
  }, [projectId, projects.data]);
  useEffect(() => {
    if (!templateName && templates.data?.[0]) setTemplateName(templates.data[0].name);
  }, [templateName, templates.data]);
  useEffect(() => {
    if (template) setValues(defaults(template.hyperparameters));
    setErrors({});
  }, [template]);
  useEffect(() => {
    const first = datasets.data?.items[0]?.id ?? "";
    if (!datasets.data?.items.some((d) => d.id === datasetId)) setDatasetId(first);
  }, [datasets.data, datasetId]);

  if (!templates.data || !projects.data) return <Loading what="templates and projects" />;

  function send(event: FormEvent) {
    event.preventDefault();
    if (!template) return;
    const checked = validate(template.hyperparameters, values);
    setErrors(checked.errors);
    if (Object.keys(checked.errors).length > 0) return;
    submit.mutate(
      {
        project_id: projectId,
        template: template.name,
        dataset_id: datasetId,
        dataset_version: datasetVersion || undefined,
        priority: Number(priority),
        name: name.trim() || undefined,
        hyperparameters: checked.values,
      },
      { onSuccess: (job) => navigate(`/jobs/${job.id}`) },
    );
  }

  const apiError = (field: string) => errors[field] ?? fieldError(submit.error, field);
  return (
    <section>
      <h1>Train a model</h1>
      <form className="form card" onSubmit={send} noValidate>
        <Select label="Project" value={projectId} onChange={setProjectId} error={fieldError(submit.error, "project_id")}>
          {projects.data.items.map((p) => (
            <option key={p.id} value={p.id}>
              {p.name}
            </option>
          ))}
        </Select>
        <Select label="Template" value={templateName} onChange={setTemplateName} error={fieldError(submit.error, "template")}>
          {templates.data.map((t) => (
            <option key={t.name} value={t.name}>
              {t.title}
            </option>
          ))}
        </Select>
        {template && <p className="hint">{template.description} Needs: {template.dataset_requirements}</p>}
        <Select label="Dataset" value={datasetId} onChange={setDatasetId} error={fieldError(submit.error, "dataset_id")}>
          {datasets.data?.items.length === 0 && <option value="">no datasets in this project</option>}
          {datasets.data?.items.map((d) => (
            <option key={d.id} value={d.id}>
              {d.name}
            </option>
          ))}
        </Select>
        <Select label="Dataset version" value={datasetVersion} onChange={setDatasetVersion} error={fieldError(submit.error, "dataset_version")}>
          <option value="">latest</option>
          {dataset.data?.versions.map((v) => (
            <option key={v.version} value={v.version}>
              {v.version.slice(0, 12)} – {v.message || v.filename}
            </option>
          ))}
        </Select>
        <Select label="Priority" value={priority} onChange={setPriority} error={fieldError(submit.error, "priority")}>
          {PRIORITIES.map(([value, label]) => (
            <option key={value} value={value}>
              {label}
            </option>
          ))}
        </Select>
        <Field label="Job name" hint="optional" value={name} error={fieldError(submit.error, "name")} onChange={(e) => setName(e.target.value)} />
        {template && (
          <HyperparameterFields
            parameters={template.hyperparameters}
            values={values}
            error={apiError}
            onChange={editHyperparameter(setValues, setErrors)}
          />
        )}
        <ErrorMessage error={submit.error} />
        <button type="submit" className="primary" disabled={submit.isPending || !datasetId}>
          Submit job
        </button>
      </form>
    </section>
  );
}
