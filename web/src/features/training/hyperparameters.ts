import type { Dispatch, SetStateAction } from "react";

import type { Hyperparameter } from "../../api/types";

export type FormValues = Record<string, string | boolean>;

export function defaults(parameters: Hyperparameter[]): FormValues {
  return Object.fromEntries(
    parameters.map((p) => [p.name, p.type === "boolean" ? Boolean(p.default) : String(p.default)]),
  );
}

// Checks the form against the template's declared types and ranges, before anything is sent.
// Returns the values to submit (only those that differ from the defaults) or the errors by name.
export function validate(
  parameters: Hyperparameter[],
  values: FormValues,
): { values: Record<string, number | boolean | string>; errors: Record<string, string> } {
  const out: Record<string, number | boolean | string> = {};
  const errors: Record<string, string> = {};
  for (const p of parameters) {
    const raw = values[p.name];
    if (p.type === "boolean") {
      if (raw !== p.default) out[p.name] = Boolean(raw);
      continue;
    }
    const text = String(raw ?? "").trim();
    if (p.type === "string") {
      if (p.choices && !p.choices.includes(text)) errors[p.name] = `choose one of ${p.choices.join(", ")}`;
      else if (text !== p.default) out[p.name] = text;
      continue;
    }
    const value = Number(text);
    if (text === "" || !Number.isFinite(value)) {
      errors[p.name] = "must be a number";
    } else if (p.type === "integer" && !Number.isInteger(value)) {
      errors[p.name] = "must be a whole number";
    } else if (p.minimum !== null && p.minimum !== undefined && value < p.minimum) {
      errors[p.name] = `must be at least ${p.minimum}`;
    } else if (p.maximum !== null && p.maximum !== undefined && value > p.maximum) {
      errors[p.name] = `must be at most ${p.maximum}`;
    } else if (value !== p.default) {
      out[p.name] = value;
    }
  }
  return { values: out, errors };
}

// The `onChange` of a form's hyperparameter fieldset: the edited value is kept and the error the
// field had is dropped.
export function editHyperparameter(
  setValues: Dispatch<SetStateAction<FormValues>>,
  setErrors: Dispatch<SetStateAction<Record<string, string>>>,
): (parameter: string, value: string | boolean) => void {
  return (parameter, value) => {
    setValues((current) => ({ ...current, [parameter]: value }));
    setErrors(({ [parameter]: _fixed, ...rest }) => rest);
  };
}
