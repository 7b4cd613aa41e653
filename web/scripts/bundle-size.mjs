// Fails when the JavaScript the first page load needs (the entry script and what it imports
// statically) passes its budget gzipped, or when pages stopped being split into lazy chunks.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const BUDGET_BYTES = 300 * 1024;
const MIN_LAZY_CHUNKS = 10;
const bundle = new URL("../../src/aiplatform/web_static/", import.meta.url).pathname;
const page = readFileSync(join(bundle, "index.html"), "utf8");
const eager = [...page.matchAll(/(?:src|href)="\/(assets\/[^"]+\.js)"/g)].map((match) => match[1]);
const gzipped = eager.reduce((total, file) => total + gzipSync(readFileSync(join(bundle, file))).length, 0);
const chunks = readdirSync(join(bundle, "assets")).filter((name) => name.endsWith(".js")).length - eager.length;

console.log(`first-load JavaScript: ${eager.join(", ")} = ${(gzipped / 1024).toFixed(1)} kB gzipped; ${chunks} lazy chunks`);
if (gzipped > BUDGET_BYTES) throw new Error(`the first-load JavaScript is over ${BUDGET_BYTES / 1024} kB gzipped`);
if (chunks < MIN_LAZY_CHUNKS) throw new Error(`only ${chunks} lazy chunks: are routes still loaded lazily?`);
