import { screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { envelope, renderPage } from "../../../test/render";
import { fakeApi, page } from "../../../test/fakeApi";
import { ExperimentPage } from "./ExperimentPage";
import { ProjectPage } from "./ProjectPage";

const PROJECT_ID = "0b5e6c1e-4b6d-4a3c-9c55-2c1d0f1d2a3b";
const EXPERIMENT_ID = "7d1f3a52-0c4e-4c8e-9d0a-5b7e2f1c9a11";
const DATASET_ID = "3c2b1a09-8f7e-4d6c-a5b4-392817161514";

const project = {
  id: PROJECT_ID,
  name: "Grammar lab",
  description: "",
  tags: [],
  status: "active",
  members: {},
  owner_id: "u1",
  config: {},
  created_at: "2026-01-01T00:00:00Z",
  updated_at: "2026-01-01T00:00:00Z",
  version: 1,
};

const template = {
  name: "char-lm",
  title: "Character language model",
  task: "language-modeling",
  description: "A small transformer.",
  dataset_requirements: "text",
  dataset_formats: ["text"],
  hyperparameters: [
    { name: "epochs", type: "integer", default: 3, minimum: 1, maximum: 100, description: "passes", architecture: false },
    { name: "learning_rate", type: "number", default: 0.001, minimum: 0, maximum: 1, description: "step", architecture: false },
  ],
};

const dataset = {
  id: DATASET_ID,
  project_id: PROJECT_ID,
  name: "grammar",
  description: "",
  created_by: "u1",
  created_at: "2026-01-01T00:00:00Z",
  updated_at: "2026-01-01T00:00:00Z",
  latest_version: "abc",
  version: 1,
  versions: 1,
};

const experiment = {
  id: EXPERIMENT_ID,
  project_id: PROJECT_ID,
  name: "small lm",
  description: "one quick epoch",
  base_model: null,
  task_type: "language-modeling",
  config: { template: "char-lm", dataset_id: DATASET_ID, priority: 5, hyperparameters: { epochs: 1 } },
  status: "draft",
  metrics: {},
  created_by: "5f0e1d2c-0000-0000-0000-000000000000",
  version: 1,
  created_at: "2026-01-01T00:00:00Z",
  updated_at: "2026-01-01T00:00:00Z",
};

const common = {
  "GET /training/templates": envelope([template]),
  "GET /datasets": page([dataset]),
  [`GET /datasets/${DATASET_ID}`]: envelope({ ...dataset, versions: [] }),
  "GET /models": page([]),
  "GET /training/jobs": page([]),
  "GET /users/directory": envelope([{ id: "5f0e1d2c-0000-0000-0000-000000000000", username: "ada", full_name: "" }]),
};

describe("experiments", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("are created from the project page with a training setup checked before it is sent", async () => {
    const api = fakeApi({
      ...common,
      [`GET /projects/${PROJECT_ID}`]: envelope(project),
      "GET /experiments": page([]),
      "POST /experiments": envelope({ ...experiment, name: "first try" }, null, 201),
      [`GET /experiments/${EXPERIMENT_ID}`]: envelope({ ...experiment, name: "first try" }),
    });
    vi.stubGlobal("fetch", api.fetch);
    renderPage(`/projects/${PROJECT_ID}?tab=experiments`, "/projects/:projectId", <ProjectPage />, {
      "/experiments/:experimentId": <ExperimentPage />,
    });
    expect(await screen.findByText("No experiments in this project yet.")).toBeInTheDocument();
    const user = userEvent.setup();
    await user.click(screen.getByRole("button", { name: "New experiment" }));
    await user.type(await screen.findByLabelText("Name"), "first try");
    // The first template and dataset are chosen; the template's form has its defaults.
    await vi.waitFor(() => expect(screen.getByLabelText("Dataset")).toHaveValue(DATASET_ID));
    expect(screen.getByLabelText("Template")).toHaveValue("char-lm");
    const epochs = screen.getByLabelText("epochs");
    expect(epochs).toHaveValue("3");
    await user.clear(epochs);
    await user.type(epochs, "0");
    await user.click(screen.getByRole("button", { name: "Create experiment" }));
    expect(epochs).toHaveAccessibleDescription(/must be at least 1/);
    expect(api.sent("POST", "/experiments")).toHaveLength(0);

    await user.clear(epochs);
    await user.type(epochs, "2");
    await user.type(screen.getByLabelText("Other config (JSON)"), '{{"time_limit_s": 600}');
    await user.click(screen.getByRole("button", { name: "Create experiment" }));
    expect(await screen.findByRole("heading", { name: /first try/ })).toBeInTheDocument();
    expect(api.sent("POST", "/experiments")[0].body).toEqual({
      project_id: PROJECT_ID,
      name: "first try",
      description: "",
      base_model: null,
      task_type: "language-modeling",
      config: { template: "char-lm", dataset_id: DATASET_ID, priority: 5, hyperparameters: { epochs: 2 }, time_limit_s: 600 },
    });
  });

  it("are listed on the project page with their status and metrics", async () => {
    const finished = { ...experiment, status: "completed", metrics: { final_loss: 0.5 } };
    vi.stubGlobal(
      "fetch",
      fakeApi({ ...common, [`GET /projects/${PROJECT_ID}`]: envelope(project), "GET /experiments": page([finished]) }).fetch,
    );
    renderPage(`/projects/${PROJECT_ID}?tab=experiments`, "/projects/:projectId", <ProjectPage />);
    const row = (await screen.findByRole("link", { name: "small lm" })).closest("tr") as HTMLElement;
    expect(row).toHaveTextContent("completed");
    expect(row).toHaveTextContent("final_loss 0.5");
    expect(screen.getByRole("link", { name: "small lm" })).toHaveAttribute("href", `/experiments/${EXPERIMENT_ID}`);
  });

  it("show their setup, start training and show the API's refusal plainly", async () => {
    let refuse = true;
    const api = fakeApi({
      ...common,
      [`GET /experiments/${EXPERIMENT_ID}`]: envelope(experiment),
      [`POST /experiments/${EXPERIMENT_ID}/start`]: () =>
        refuse
          ? envelope("config.dataset_id: dataset is empty", { code: "validation_error", fields: [{ field: "config.dataset_id", message: "dataset is empty" }] }, 422)
          : envelope({ ...experiment, status: "running", version: 2 }),
    });
    vi.stubGlobal("fetch", api.fetch);
    renderPage(`/experiments/${EXPERIMENT_ID}`, "/experiments/:experimentId", <ExperimentPage />);
    expect(await screen.findByRole("heading", { name: /small lm/ })).toBeInTheDocument();
    expect(screen.getByTestId("experiment-status")).toHaveTextContent("draft");
    expect(screen.getByLabelText("Config")).toHaveTextContent('"template": "char-lm"');
    expect(screen.getByText(/No metrics yet/)).toBeInTheDocument();
    expect(await screen.findByText(/by ada/)).toBeInTheDocument();
    // Its own jobs are asked for by the experiment's id, not picked from the project's newest.
    await vi.waitFor(() =>
      expect(api.sent("GET", "/training/jobs").some((call) => call.query.get("experiment_id") === EXPERIMENT_ID)).toBe(true),
    );

    const user = userEvent.setup();
    await user.click(screen.getByRole("button", { name: "Start training" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("dataset is empty");
    refuse = false;
    await user.click(screen.getByRole("button", { name: "Start training" }));
    await vi.waitFor(() => expect(screen.getByTestId("experiment-status")).toHaveTextContent("running"));
    expect(screen.getByRole("button", { name: "Start training" })).toBeDisabled();
    expect(api.sent("POST", `/experiments/${EXPERIMENT_ID}/start`)).toHaveLength(2);
  });

  it("are edited with their saved setup in the form", async () => {
    const api = fakeApi({
      ...common,
      [`GET /experiments/${EXPERIMENT_ID}`]: envelope(experiment),
      [`PUT /experiments/${EXPERIMENT_ID}`]: (call) => envelope({ ...experiment, ...(call.body as object), version: 2 }),
    });
    vi.stubGlobal("fetch", api.fetch);
    renderPage(`/experiments/${EXPERIMENT_ID}`, "/experiments/:experimentId", <ExperimentPage />);
    const user = userEvent.setup();
    await user.click(await screen.findByRole("button", { name: "Edit" }));
    const form = screen.getByRole("heading", { name: "Edit the experiment" }).parentElement as HTMLElement;
    expect(within(form).getByLabelText("Name")).toHaveValue("small lm");
    await vi.waitFor(() => expect(within(form).getByLabelText("epochs")).toHaveValue("1"));
    await user.clear(within(form).getByLabelText("Name"));
    await user.type(within(form).getByLabelText("Name"), "renamed");
    await user.click(within(form).getByRole("button", { name: "Save experiment" }));
    expect(await screen.findByRole("heading", { name: /renamed/ })).toBeInTheDocument();
    const body = api.sent("PUT", `/experiments/${EXPERIMENT_ID}`)[0].body as Record<string, unknown>;
    expect(body.name).toBe("renamed");
    expect(body.config).toEqual(experiment.config);
  });
});
