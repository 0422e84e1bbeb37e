// The package from CommonJS (`require`, as Jest and older node apps load it): the CommonJS
// build, with the same API as the ES module.

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";
import * as esm from "../dist/index.js";

const require = createRequire(import.meta.url);

test("require('@parley/client') gives the CommonJS build with the ES module's exports", () => {
  const resolved = require.resolve("@parley/client");
  const cjs = require("@parley/client");

  assert.match(resolved, /dist[\\/]cjs[\\/]index\.js$/);
  assert.deepEqual(Object.keys(cjs).sort(), Object.keys(esm).sort());
  assert.equal(typeof cjs.ParleyClient, "function");
  assert.equal(new cjs.ParleyError("closed", "x").code, "closed");
});
