// Parse documents with compiled Zod schemas, all in one Node process.
//   in:  {"checks": [{"module": "/abs/path/campaigns.js", "export": "campaignsSchema", "documents": [...]}]}
//   out: {"results": [[{"ok": true} | {"ok": false, "issues": ["path: message", ...]}, ...], ...]}
// One result list per check, one entry per document, in order. JSON cannot carry NaN or
// ±Infinity: a number sent as {"$nonFinite": "NaN" | "Infinity" | "-Infinity"} is parsed back
// into that number before the schema sees it.
import { pathToFileURL } from "node:url";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const nonFinite = (key, value) =>
  value !== null && typeof value === "object" && !Array.isArray(value) &&
  Object.keys(value).length === 1 && typeof value.$nonFinite === "string"
    ? Number(value.$nonFinite)
    : value;
const job = JSON.parse(Buffer.concat(chunks).toString("utf8"), nonFinite);

const results = [];
for (const check of job.checks) {
  const mod = await import(pathToFileURL(check.module).href);
  const schema = mod[check.export];
  if (!schema || typeof schema.safeParse !== "function") {
    process.stdout.write(JSON.stringify({ error: `${check.module} exports no Zod schema ${check.export}` }));
    process.exit(3);
  }
  results.push(check.documents.map((doc) => {
    const parsed = schema.safeParse(doc);
    if (parsed.success) return { ok: true };
    return { ok: false, issues: parsed.error.issues.map((i) => `${i.path.join("/") || "(document)"}: ${i.message}`) };
  }));
}
process.stdout.write(JSON.stringify({ results }));
