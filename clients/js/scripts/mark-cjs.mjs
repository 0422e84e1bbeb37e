// dist/cjs holds the CommonJS build (for `require`: Jest, older node apps); this package is
// "type": "module", so its .js files are read as CommonJS only under a package.json saying so.
import { writeFileSync } from "node:fs";

writeFileSync(new URL("../dist/cjs/package.json", import.meta.url), '{ "type": "commonjs" }\n');
