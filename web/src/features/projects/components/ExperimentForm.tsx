import { useEffect, useId, useState, type FormEvent } from "react";
import { ErrorMessage, fieldError, Loading } from "../../../components/Feedback";
import { Field } from "../../../components/Field";
import { useDataset, useDatasets } from "../../datasets/api/datasets";
import { useModels } from "../../models/api/models";
import { useTemplates } from "../../training/api/training";
import { HyperparameterFields, Select } from "../../training/components/FormControls";
import { defaults, editHyperparameter, validate, type FormValues } from "../../training/hyperparameters";
import type { Experiment } from "../api/experiments";

export interface ExperimentFormValues {
  name: string;
  description: string;
  base_model: string | null;
  task_type: string | null;
  config: Record<string, unknown>;
}

// The config keys the form has inputs for (what POST experiments/{id}/start reads); any other
// keys are kept, and edited as JSON.
const KNOWN_KEYS = ["template", "dataset_id", "dataset_version", "priority", "hyperparameters"];
const PRIORITIES = [
  ["0", "critical"],
  ["1", "high"],
  ["5", "normal"],
  ["9", "low"],
] as const;

interface ExperimentFormProps {
  projectId: string;
  initial?: Experiment;
  submitLabel: string;
  pending: boolean;
  error: unknown;
  onSubmit: (values: ExperimentFormValues) => void;
}

function text(value: unknown): string {
  return typeof value === "string" || typeof value === "number" ? String(value) : "";
}

function extraConfig(config: Record<string, unknown> | undefined): string {
  const rest = Object.fromEntries(Object.entries(config ?? {}).filter(([key]) => !KNOWN_KEYS.includes(key)));
  return Object.keys(rest).length > 0 ? JSON.stringify(rest, null, 2) : "";
}

// Creates or edits an experiment: its training setup (template, dataset, hyperparameters,
// priority) is kept in its config, which is what starting it submits as a training job.
export function ExperimentForm({ projectId, initial, submitLabel, pending, error, onSubmit }: ExperimentFormProps) {
  const config = initial?.config ?? {};
  const templates = useTemplates();
  const datasets = useDatasets(projectId);
  const models = useModels(projectId);
  const [name, setName] = useState(initial?.name ?? "");
  const [description, setDescription] = useState(initial?.description ?? "");
  const [templateName, setTemplateName] = useState(text(config.template));
  const [taskType, setTaskType] = useState(initial?.task_type ?? "");
  const [baseModel, setBaseModel] = useState(initial?.base_model ?? "");
  const [datasetId, setDatasetId] = useState(text(config.dataset_id));
  const dataset = useDataset(datasetId);
  const [datasetVersion, setDatasetVersion] = useState(text(config.dataset_version));
  const [priority, setPriority] = useState(text(config.priority) || "5");
  const [values, setValues] = useState<FormValues>({});
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [extra, setExtra] = useState(extraConfig(initial?.config));
  const extraId = useId();
  const template = templates.data?.find((t) => t.name === templateName);

  // A new experiment starts from the first template and dataset; an edited one keeps its own.
  useEffect(() => {
    if (!initial && !templateName && templates.data?.[0]) setTemplateName(templates.data[0].name);
  }, [initial, templateName, templates.data]);
  useEffect(() => {
    if (!initial && !datasetId && datasets.data?.items[0]) setDatasetId(datasets.data.items[0].id);
  }, [initial, datasetId, datasets.data]);
  useEffect(() => {
    if (!template) return;
    const saved = template.name === text(config.template) && typeof config.hyperparameters === "object" && config.hyperparameters ? (config.hyperparameters as Record<string, unknown>) : {};
    const start = defaults(template.hyperparameters);
    for (const [key, value] of Object.entries(saved)) if (key in start) start[key] = typeof value === "boolean" ? value : String(value);
    setValues(start);
    setErrors({});
    // Only a change of template resets the hyperparameters.
  }, [template]);

  if (!templates.data) return <Loading what="the templates" />;

  function submit(event: FormEvent) {
    event.preventDefault();
    const problems: Record<string, string> = {};
    let others: Record<string, unknown> = {};
    if (extra.trim()) {
      try {
        const parsed: unknown = JSON.parse(extra);
        if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) problems.extra = "must be a JSON object";
        else others = parsed as Record<string, unknown>;
      } catch (reason) {
        problems.extra = `is not JSON: ${reason instanceof Error ? reason.message : String(reason)}`;
      }
    }
    const checked = template ? validate(template.hyperparameters, values) : { values: {}, errors: {} };
    Object.assign(problems, checked.errors);
    setErrors(problems);
    if (Object.keys(problems).length > 0) return;
    const next: Record<string, unknown> = { ...others, priority: Number(priority) };
    if (template) {
      next.template = template.name;
      next.hyperparameters = checked.values;
    }
    if (datasetId) next.dataset_id = datasetId;
    if (datasetId && datasetVersion) next.dataset_version = datasetVersion;
    onSubmit({
      name: name.trim(),
      description,
      base_model: baseModel || null,
      task_type: taskType.trim() || template?.task || null,
      config: next,
    });
  }

  const problem = (field: string) => errors[field] ?? fieldError(error, field);
  return (
    <form className="form" onSubmit={submit} noValidate>
      <Field label="Name" required value={name} error={fieldError(error, "name")} onChange={(e) => setName(e.target.value)} />
      <Field label="Description" value={description} error={fieldError(error, "description")} onChange={(e) => setDescription(e.target.value)} />
      <div className="grid">
        <Select label="Template" value={templateName} onChange={setTemplateName} error={problem("template")}>
          <option value="">none yet</option>
          {templates.data.map((t) => (
            <option key={t.name} value={t.name}>
              {t.title}
            </option>
          ))}
        </Select>
        <Field
          label="Task type"
          value={taskType}
          placeholder={template?.task ?? ""}
          hint="the template's task when left empty"
          error={fieldError(error, "task_type")}
          onChange={(e) => setTaskType(e.target.value)}
        />
        <Select label="Base model" value={baseModel} onChange={setBaseModel} error={problem("base_model")}>
          <option value="">none: train from scratch</option>
          {models.data?.items.map((m) => (
            <option key={m.id} value={m.id}>
              {m.name}
            </option>
          ))}
        </Select>
        <Select label="Dataset" value={datasetId} onChange={setDatasetId} error={problem("dataset_id")}>
          <option value="">{datasets.data?.items.length === 0 ? "no datasets in this project" : "none yet"}</option>
          {datasets.data?.items.map((d) => (
            <option key={d.id} value={d.id}>
              {d.name}
            </option>
          ))}
        </Select>
        <Select label="Dataset version" value={datasetVersion} onChange={setDatasetVersion} error={problem("dataset_version")}>
          <option value="">latest</option>
          {dataset.data?.versions.map((v) => (
            <option key={v.version} value={v.version}>
              {v.version.slice(0, 12)} – {v.message || v.filename}
            </option>
          ))}
        </Select>
        <Select label="Priority" value={priority} onChange={setPriority} error={problem("priority")}>
          {PRIORITIES.map(([value, label]) => (
            <option key={value} value={value}>
              {label}
            </option>
          ))}
        </Select>
      </div>
      {template && (
        <HyperparameterFields
          parameters={template.hyperparameters}
          values={values}
          error={problem}
          onChange={editHyperparameter(setValues, setErrors)}
        />
      )}
      <div className="field">
        <label htmlFor={extraId}>Other config (JSON)</label>
        <textarea
          id={extraId}
          rows={3}
          className="mono"
          value={extra}
          placeholder='{"time_limit_s": 3600}'
          aria-invalid={errors.extra ? true : undefined}
          aria-describedby={errors.extra ? `${extraId}-error` : undefined}
          onChange={(e) => setExtra(e.target.value)}
        />
        {errors.extra && (
          <small id={`${extraId}-error`} className="field-error" role="alert">
            {errors.extra}
          </small>
        )}
      </div>
      <ErrorMessage error={error} />
      <button type="submit" className="primary" disabled={pending}>
        {submitLabel}
      </button>
    </form>
  );
}
