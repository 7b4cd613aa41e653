// Fails when the API types the UI is built against are not those of the backend: regenerates
// the OpenAPI schema (`aiplatform openapi`, no server needed) and the TypeScript types from it
// into a temporary folder, and compares both with the committed openapi.json and schema.d.ts.
// `npm run schema` brings them up to date.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const web = new URL("..", import.meta.url).pathname;
const python = process.env.AIPLATFORM_PYTHON ?? join(web, "..", ".venv", "bin", "python");
if (!existsSync(python)) {
  throw new Error(`no Python with the platform at ${python}: set AIPLATFORM_PYTHON to check the API types`);
}
const scratch = mkdtempSync(join(tmpdir(), "schema-check-"));
try {
  const schema = execFileSync(python, ["-m", "aiplatform", "openapi"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], maxBuffer: 64 * 1024 * 1024 });
  const fresh = join(scratch, "openapi.json");
  writeFileSync(fresh, schema);
  const types = join(scratch, "schema.d.ts");
  execFileSync(join(web, "node_modules", ".bin", "openapi-typescript"), [fresh, "-o", types], { stdio: "ignore" });
  const drifted = [];
  if (JSON.stringify(JSON.parse(schema)) !== JSON.stringify(JSON.parse(readFileSync(join(web, "openapi.json"), "utf8")))) drifted.push("openapi.json");
  if (readFileSync(types, "utf8") !== readFileSync(join(web, "src", "api", "schema.d.ts"), "utf8")) drifted.push("src/api/schema.d.ts");
  if (drifted.length > 0) {
    throw new Error(`${drifted.join(" and ")} no longer ${drifted.length > 1 ? "match" : "matches"} the backend's OpenAPI: run \`npm run schema\` and commit the result`);
  }
  console.log("API types: schema.d.ts matches the backend's OpenAPI");
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
