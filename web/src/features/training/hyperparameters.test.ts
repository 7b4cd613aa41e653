import type { Hyperparameter } from "../../api/types";
import { defaults, validate } from "./hyperparameters";

const parameter = (overrides: Partial<Hyperparameter>): Hyperparameter => ({
  name: "epochs",
  type: "integer",
  default: 8,
  minimum: 1,
  maximum: 1000,
  description: "passes over the data",
  architecture: false,
  choices: null,
  ...overrides,
});

const PARAMETERS = [
  parameter({}),
  parameter({ name: "learning_rate", type: "number", default: 0.003, minimum: 1e-6, maximum: 1 }),
  parameter({ name: "lr_schedule", type: "string", default: "cosine", minimum: null, maximum: null, choices: ["cosine", "constant"] }),
  parameter({ name: "shuffle", type: "boolean", default: true, minimum: null, maximum: null }),
];

describe("hyperparameter validation", () => {
  it("sends nothing when every value is its default", () => {
    expect(validate(PARAMETERS, defaults(PARAMETERS))).toEqual({ values: {}, errors: {} });
  });

  it("sends changed values with their declared types", () => {
    const result = validate(PARAMETERS, { ...defaults(PARAMETERS), epochs: "3", learning_rate: "0.01", lr_schedule: "constant", shuffle: false });
    expect(result).toEqual({ values: { epochs: 3, learning_rate: 0.01, lr_schedule: "constant", shuffle: false }, errors: {} });
  });

  it.each([
    ["epochs", "0", "must be at least 1"],
    ["epochs", "1001", "must be at most 1000"],
    ["epochs", "2.5", "must be a whole number"],
    ["epochs", "", "must be a number"],
    ["learning_rate", "fast", "must be a number"],
    ["lr_schedule", "linear", "choose one of cosine, constant"],
  ])("refuses %s = %j: %s", (name, value, message) => {
    const result = validate(PARAMETERS, { ...defaults(PARAMETERS), [name]: value });
    expect(result.errors).toEqual({ [name]: message });
  });
});
