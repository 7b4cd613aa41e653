import { useId, type ReactNode } from "react";
import type { Hyperparameter } from "../../../api/types";
import { Field } from "../../../components/Field";

// Form controls shared by the job and experiment forms: a labelled select, and a template's
// hyperparameter form, each input generated from its declared type, default and range.
export function Select({ label, value, onChange, children, error }: { label: string; value: string; onChange: (v: string) => void; children: ReactNode; error?: string }) {
  const id = useId();
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <select
        id={id}
        value={value}
        onChange={(e) => onChange(e.target.value)}
        aria-invalid={error ? true : undefined}
        aria-describedby={error ? `${id}-error` : undefined}
      >
        {children}
      </select>
      {error && (
        <small id={`${id}-error`} className="field-error" role="alert">
          {error}
        </small>
      )}
    </div>
  );
}

export function HyperparameterInput({ parameter, value, error, onChange }: { parameter: Hyperparameter; value: string | boolean; error?: string; onChange: (v: string | boolean) => void }) {
  const range =
    parameter.minimum !== null && parameter.minimum !== undefined ? ` (${parameter.minimum} – ${parameter.maximum ?? "∞"})` : "";
  if (parameter.type === "boolean") {
    return (
      <div className="field checkbox">
        <label>
          <input type="checkbox" checked={Boolean(value)} onChange={(e) => onChange(e.target.checked)} /> {parameter.name}
        </label>
        <small className="hint">{parameter.description}</small>
      </div>
    );
  }
  if (parameter.choices?.length) {
    return (
      <Select label={parameter.name} value={String(value)} onChange={onChange} error={error}>
        {parameter.choices.map((choice) => (
          <option key={choice}>{choice}</option>
        ))}
      </Select>
    );
  }
  return (
    <Field
      label={parameter.name}
      inputMode={parameter.type === "string" ? "text" : "decimal"}
      value={String(value)}
      hint={`${parameter.description}${range}`}
      error={error}
      onChange={(e) => onChange(e.target.value)}
    />
  );
}

// The whole form: `onChange` gets each edit; `error` names what is wrong with a parameter.
export function HyperparameterFields({
  parameters,
  values,
  error,
  onChange,
}: {
  parameters: Hyperparameter[];
  values: Record<string, string | boolean>;
  error: (name: string) => string | undefined;
  onChange: (name: string, value: string | boolean) => void;
}) {
  return (
    <fieldset>
      <legend>Hyperparameters</legend>
      <div className="grid">
        {parameters.map((parameter) => (
          <HyperparameterInput
            key={parameter.name}
            parameter={parameter}
            value={values[parameter.name] ?? ""}
            error={error(parameter.name)}
            onChange={(value) => onChange(parameter.name, value)}
          />
        ))}
      </div>
    </fieldset>
  );
}
