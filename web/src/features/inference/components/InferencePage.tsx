import { useRef, useState, type FormEvent } from "react";
import { useSearchParams } from "react-router";
import { ApiError } from "../../../api/client";
import { ErrorMessage, fieldError, Loading } from "../../../components/Feedback";
import { Field } from "../../../components/Field";
import { formatNumber } from "../../../lib/format";
import { ProjectPicker } from "../../projects/components/ProjectPicker";
import { generateStream, predict, useServableModels, type Prediction } from "../api/inference";

export function InferencePage() {
  const [params, setParams] = useSearchParams();
  const projectId = params.get("project") ?? "";
  const models = useServableModels(projectId);
  const [modelId, setModelId] = useState(params.get("model") ?? "");
  const [prompt, setPrompt] = useState("");
  const [maxTokens, setMaxTokens] = useState("100");
  const [output, setOutput] = useState("");
  const [predictions, setPredictions] = useState<Prediction[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [running, setRunning] = useState(false);
  const abort = useRef<AbortController | null>(null);

  const picker = <ProjectPicker value={projectId} onChange={(id) => setParams({ project: id }, { replace: true })} />;
  if (!models.data) {
    return (
      <section>
        <h1>Inference</h1>
        {picker}
        {models.error ? <ErrorMessage error={models.error} /> : projectId && <Loading what="models" />}
      </section>
    );
  }
  const chosen = models.data.find((m) => m.id === modelId) ?? models.data[0];
  const generates = chosen?.task === "text-generation";

  async function run(event: FormEvent) {
    event.preventDefault();
    if (!chosen) return;
    setError(null);
    setOutput("");
    setPredictions(null);
    setRunning(true);
    abort.current = new AbortController();
    try {
      if (generates) {
        const tokens = Number(maxTokens);
        if (!Number.isInteger(tokens) || tokens < 1) throw new ApiError(422, "max new tokens must be a whole number above 0", { fields: [{ field: "max_new_tokens", message: "must be a whole number above 0" }] });
        await generateStream({ model_id: chosen.id, prompt, max_new_tokens: tokens }, (piece) => setOutput((text) => text + piece), abort.current.signal);
      } else {
        const inputs = prompt.split("\n").filter((line) => line.trim());
        const parsed = inputs.map((line) => {
          try {
            return JSON.parse(line) as unknown;
          } catch {
            return line;
          }
        });
        setPredictions((await predict({ model_id: chosen.id, inputs: parsed })).predictions);
      }
    } catch (caught) {
      if (!abort.current.signal.aborted) setError(caught);
    } finally {
      setRunning(false);
    }
  }

  return (
    <section>
      <h1>Inference</h1>
      {picker}
      {models.data.length === 0 ? (
        <p className="empty">No model can serve yet: train one first.</p>
      ) : (
        <form className="form card" onSubmit={run}>
          <div className="field">
            <label htmlFor="inference-model">Model</label>
            <select id="inference-model" value={chosen?.id} onChange={(e) => setModelId(e.target.value)}>
              {models.data.map((m) => (
                <option key={m.id} value={m.id}>
                  {m.name} ({m.template}, {m.stage})
                </option>
              ))}
            </select>
          </div>
          <div className="field">
            <label htmlFor="inference-prompt">{generates ? "Prompt" : "Inputs (one per line: text, or a JSON object of features)"}</label>
            <textarea id="inference-prompt" rows={4} value={prompt} onChange={(e) => setPrompt(e.target.value)} aria-invalid={fieldError(error, "prompt") ? true : undefined} />
            {fieldError(error, "prompt") && (
              <small className="field-error" role="alert">
                {fieldError(error, "prompt")}
              </small>
            )}
          </div>
          {generates && <Field label="Max new tokens" inputMode="numeric" value={maxTokens} error={fieldError(error, "max_new_tokens")} onChange={(e) => setMaxTokens(e.target.value)} />}
          <ErrorMessage error={error} />
          <div className="actions">
            <button type="submit" className="primary" disabled={running}>
              {generates ? "Generate" : "Predict"}
            </button>
            {running && (
              <button type="button" onClick={() => abort.current?.abort()}>
                Stop
              </button>
            )}
          </div>
        </form>
      )}
      {generates && (output || running) && (
        <div className="card">
          <h2>Output</h2>
          <pre className="output" aria-live="polite" aria-label="Generated text">
            {prompt}
            <strong>{output}</strong>
            {running && <span className="cursor">▍</span>}
          </pre>
        </div>
      )}
      {predictions && (
        <div className="card">
          <h2>Predictions</h2>
          {predictions.map((prediction, index) => (
            <div key={index} className="prediction">
              <p>
                Input {index + 1}: <strong>{prediction.label}</strong>
              </p>
              <ul className="labels">
                {Object.entries(prediction.probabilities)
                  .sort((a, b) => b[1] - a[1])
                  .map(([label, p]) => (
                    <li key={label}>
                      <span className="label-name">{label}</span>
                      <span className="bar" style={{ width: `${Math.round(p * 160)}px` }} aria-hidden="true" />
                      <span>{formatNumber(p * 100, 3)}%</span>
                    </li>
                  ))}
              </ul>
            </div>
          ))}
        </div>
      )}
    </section>
  );
}
