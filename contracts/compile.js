// Compiles contracts/src with solcjs through its JS API (its CLI cuts piped output at 128 KiB)
// and writes one artifact per contract: ABI, creation and runtime bytecode, compiler settings.
//   node contracts/compile.js [--src DIR] [--out DIR]   (--src: e.g. an EZKL-generated verifier)
// Imports beginning with "@" resolve to node_modules at the repo root; nothing is downloaded.
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const here = __dirname;
const root = path.resolve(here, "..");
const args = process.argv.slice(2);
const srcIdx = args.indexOf("--src");
const srcDir = srcIdx >= 0 ? path.resolve(args[srcIdx + 1]) : path.join(here, "src");
const outIdx = args.indexOf("--out");
const outDir = outIdx >= 0 ? path.resolve(args[outIdx + 1]) : path.join(here, "artifacts");

// EVM version both py-evm (the embedded chain) and anvil execute.
const settings = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

const sources = {};
for (const name of fs.readdirSync(srcDir).sort()) {
  if (name.endsWith(".sol")) sources[name] = { content: fs.readFileSync(path.join(srcDir, name), "utf8") };
}

// NODE_PATH (set by fedmarket when it compiles EZKL's verifiers from an installed package) is
// searched after the checkout's node_modules, as node itself does for require().
const modulePaths = [path.join(root, "node_modules"), ...(process.env.NODE_PATH || "").split(path.delimiter).filter(Boolean)];

function findImports(importPath) {
  const candidates = [path.join(srcDir, importPath), ...modulePaths.map((dir) => path.join(dir, importPath))];
  for (const file of candidates) {
    if (fs.existsSync(file)) return { contents: fs.readFileSync(file, "utf8") };
  }
  return { error: `import not found: ${importPath}` };
}

const input = { language: "Solidity", sources, settings };
const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) process.stderr.write(e.formattedMessage + "\n");
if (errors.length) process.exit(1);

fs.mkdirSync(outDir, { recursive: true });
for (const file of Object.keys(sources)) {
  for (const [name, c] of Object.entries(output.contracts[file] || {})) {
    if (!c.evm.bytecode.object) continue; // interfaces have no code
    const artifact = {
      contractName: name,
      sourceName: `contracts/src/${file}`,
      compiler: { name: "solcjs", version: solc.version(), settings: { optimizer: settings.optimizer, evmVersion: settings.evmVersion } },
      abi: c.abi,
      bytecode: "0x" + c.evm.bytecode.object,
      deployedBytecode: "0x" + c.evm.deployedBytecode.object,
    };
    fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
    process.stdout.write(`${name}: ${c.evm.deployedBytecode.object.length / 2} bytes runtime\n`);
  }
}
