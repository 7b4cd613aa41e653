import { Link, useSearchParams } from "react-router";
import { Empty, ErrorMessage, Loading, StatusBadge } from "../../../components/Feedback";
import { formatBytes, formatNumber, formatTime } from "../../../lib/format";
import { ProjectPicker } from "../../projects/components/ProjectPicker";
import { useModels } from "../api/models";

export function ModelsPage() {
  const [params, setParams] = useSearchParams();
  const projectId = params.get("project") ?? "";
  const models = useModels(projectId);
  return (
    <section>
      <h1>Model registry</h1>
      <ProjectPicker value={projectId} onChange={(id) => setParams({ project: id }, { replace: true })} />
      <ErrorMessage error={models.error} />
      {!models.data ? (
        <Loading what="models" />
      ) : models.data.items.length === 0 ? (
        <Empty>No models yet: a finished training job registers one.</Empty>
      ) : (
        <div className="scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">Model</th>
                <th scope="col">Stage</th>
                <th scope="col">Framework</th>
                <th scope="col">Size</th>
                <th scope="col">Metrics</th>
                <th scope="col">Registered</th>
              </tr>
            </thead>
            <tbody>
              {models.data.items.map((model) => (
                <tr key={model.id}>
                  <td>
                    <Link to={`/models/${model.id}`}>{model.name}</Link>
                  </td>
                  <td>
                    <StatusBadge status={model.stage} />
                  </td>
                  <td>{model.framework}</td>
                  <td>{formatBytes(model.size)}</td>
                  <td>
                    {Object.entries(model.metrics)
                      .slice(0, 3)
                      .map(([name, value]) => `${name} ${formatNumber(value, 3)}`)
                      .join(" · ")}
                  </td>
                  <td>{formatTime(model.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
