// Run the Khronos glTF validator (npm `gltf-validator`) on GLB / VRM files.
//
// Usage: node validate.mjs FILE...
// Prints one JSON array to stdout: per file {file, errors, warnings, infos, messages[]} where
// messages are the validator's issues of severity error (0) and warning (1), at most 50 each.
// Exits 0 when every file was validated (whatever it found), 1 when the validator could not run.
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const validator = require("gltf-validator");

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate.mjs FILE...");
  process.exit(1);
}

const results = [];
for (const file of files) {
  const bytes = new Uint8Array(await readFile(file));
  // maxIssues 0 = unlimited, so the counts below are the validator's full counts.
  const report = await validator.validateBytes(bytes, { uri: file, maxIssues: 0 });
  const issues = report.issues;
  const messages = issues.messages
    .filter((m) => m.severity <= 1)
    .slice(0, 50)
    .map((m) => ({ code: m.code, severity: m.severity, message: m.message, pointer: m.pointer }));
  results.push({
    file,
    validatorVersion: report.validatorVersion,
    errors: issues.numErrors,
    warnings: issues.numWarnings,
    infos: issues.numInfos,
    messages,
  });
}
console.log(JSON.stringify(results, null, 1));
