import { useState, type FormEvent } from "react";
import type { Project } from "../../../api/types";
import { ErrorMessage, fieldError } from "../../../components/Feedback";
import { Field } from "../../../components/Field";

export interface ProjectFormValues {
  name: string;
  description: string;
  tags: string[];
}

interface ProjectFormProps {
  initial?: Project;
  submitLabel: string;
  pending: boolean;
  error: unknown;
  onSubmit: (values: ProjectFormValues) => void;
}

export function ProjectForm({ initial, submitLabel, pending, error, onSubmit }: ProjectFormProps) {
  const [name, setName] = useState(initial?.name ?? "");
  const [description, setDescription] = useState(initial?.description ?? "");
  const [tags, setTags] = useState(initial?.tags.join(", ") ?? "");

  function submit(event: FormEvent) {
    event.preventDefault();
    onSubmit({
      name: name.trim(),
      description,
      tags: tags.split(",").map((tag) => tag.trim()).filter(Boolean),
    });
  }

  return (
    <form className="form" onSubmit={submit}>
      <Field label="Name" required value={name} error={fieldError(error, "name")} onChange={(e) => setName(e.target.value)} />
      <Field label="Description" value={description} error={fieldError(error, "description")} onChange={(e) => setDescription(e.target.value)} />
      <Field label="Tags" hint="comma-separated" value={tags} error={fieldError(error, "tags")} onChange={(e) => setTags(e.target.value)} />
      <ErrorMessage error={error} />
      <button type="submit" className="primary" disabled={pending}>
        {submitLabel}
      </button>
    </form>
  );
}
