// Renders TeX with KaTeX for the notebook-standard check (tools/notebook_standard.py).
// stdin:  JSON, a list of notebooks, each a list of {"tex": "...", "display": true|false}.
// stdout: JSON, the same shape with null (renders) or the KaTeX error message in place of each span.
// Exit 3, with the reason on stderr, where KaTeX cannot be loaded (`make katex` installs it).
"use strict";
let katex;
try {
  katex = require("katex");   // found through NODE_PATH, which the Python side points at .cache/node
} catch (e) {
  process.stderr.write("KaTeX is not installed (run `make katex`): " + e.message.split("\n")[0] + "\n");
  process.exit(3);
}

// Jupyter renders notebook math with MathJax, which accepts a few things KaTeX rejects. Each entry
// here is valid in Jupyter; add one only for such a case, never to hide a real error.
const MATHJAX_ONLY = {
  "\\label": { tokens: [], numArgs: 1 },   // \label{eq:x}: MathJax keeps it for \eqref, KaTeX has none; drop it
};

function render(span, macros) {
  try {
    katex.renderToString(span.tex, {
      displayMode: span.display,
      throwOnError: true,   // every parse error is a problem ...
      strict: "ignore",     // ... but not KaTeX's LaTeX-compatibility warnings (e.g. Unicode in math)
      globalGroup: true,    // \newcommand in one cell holds in later cells, as with MathJax in Jupyter
      macros,
    });
    return null;
  } catch (e) {
    // KaTeX underlines the offending part with combining characters; keep the message plain.
    return String(e.message || e).replace(/\u0332/g, "");
  }
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const notebooks = JSON.parse(input);
  const errors = notebooks.map((spans) => {
    const macros = { ...MATHJAX_ONLY };   // definitions are shared within a notebook, not across
    return spans.map((span) => render(span, macros));
  });
  process.stdout.write(JSON.stringify(errors));
});
