// TypeScript types and Zod schemas for every collection in one Node process (starting Node
// is the slow part on a busy machine). Reads a job from stdin, writes a result to stdout:
//   in:  {"collections": [{"name", "typeName", "schemaName", "banner", "schema", "flatSchema"}]}
//   out: {"results": {"<name>": {"typescript": "...", "zod": "..."}}}
//    or: {"error": {"kind": "missing_package" | "generator", "package"?, "collection"?, "message"}}
// `flatSchema` is the schema with local $refs inlined: json-schema-to-zod does not follow them.

const fail = (error) => {
  process.stdout.write(JSON.stringify({ error }));
  process.exit(3);
};

async function load(name) {
  try {
    return await import(name);
  } catch (err) {
    if (err && err.code === "ERR_MODULE_NOT_FOUND") {
      fail({ kind: "missing_package", package: name, message: String(err.message).split("\n")[0] });
    }
    throw err;
  }
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

const { compile } = await load("json-schema-to-typescript");
const { jsonSchemaToZod, parseString } = await load("json-schema-to-zod");
const prettier = await load("prettier");

// JSON Schema's "uuid" is the 8-4-4-4-12 hex form; Zod 4's .uuid() also demands RFC 9562
// version and variant bits, which many stored UUIDs (md5-derived, imported) do not have.
// z.guid() checks the form only, as JSON Schema does.
const parserOverride = (schema) => {
  if (schema && schema.type === "string" && schema.format === "uuid") {
    const { format, ...rest } = schema;
    const code = parseString(rest).replace(/^z\.string\(\)/, "z.guid()");
    return schema.description ? `${code}.describe(${JSON.stringify(schema.description)})` : code;
  }
  return undefined;
};

const job = await readStdin();
const results = {};
for (const c of job.collections) {
  try {
    const typescript = await compile(c.schema, c.typeName, {
      bannerComment: c.banner,
      additionalProperties: false,
      declareExternallyReferenced: true,
      strictIndexSignatures: true,
      format: true,
    });
    const code = jsonSchemaToZod(c.flatSchema, {
      name: c.schemaName,
      module: "esm",
      type: c.typeName,
      zodVersion: 4,
      parserOverride,
    });
    const zod = await prettier.format(`${c.banner}\n${code}`, { parser: "typescript" });
    results[c.name] = { typescript, zod };
  } catch (err) {
    fail({ kind: "generator", collection: c.name, message: String(err && err.message || err).split("\n")[0] });
  }
}
process.stdout.write(JSON.stringify({ results }));
