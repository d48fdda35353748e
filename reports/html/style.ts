/** CSS shared by the run report and the release grid (compare). Colours carry a word beside them. */
export const REPORT_CSS = `
:root { --pass:#1a7f37; --pass-bg:#dafbe1; --fail:#b01c1c; --fail-bg:#ffd8d3; --error:#6e1d8a; --error-bg:#f0d9fb;
  --known:#8a4b00; --known-bg:#fde8cf; --skip:#57606a; --skip-bg:#eaeef2; --eu:#0550ae; --eu-bg:#ddf4ff;
  --warning:#7d4e00; --warning-bg:#fff1c2; --border:#d0d7de; --muted:#57606a; --mono: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; padding: 12px 20px 40px; color: #1f2328; background: #fff; }
h1 { font-size: 22px; margin: 4px 0 6px; } h2 { font-size: 17px; margin: 22px 0 8px; } h3 { font-size: 14px; margin: 12px 0 6px; }
code, pre, .mono { font-family: var(--mono); font-size: 12.5px; }
pre { background: #f6f8fa; border: 1px solid var(--border); padding: 6px 8px; margin: 4px 0 8px; overflow: auto; max-height: 28em; white-space: pre; }
a { color: #0969da; }
a:focus-visible, button:focus-visible, summary:focus-visible, input:focus-visible, select:focus-visible { outline: 2px solid #0969da; outline-offset: 1px; }
.muted { color: var(--muted); }
[hidden] { display: none !important; }
.verdict { padding: 10px 14px; border-radius: 6px; margin: 6px 0 8px; border: 1px solid; }
.verdict h1 { margin: 0; }
.verdict p { margin: 2px 0 0; }
.verdict.bad { background: var(--fail-bg); color: var(--fail); border-color: var(--fail); }
.verdict.good { background: var(--pass-bg); color: var(--pass); border-color: var(--pass); }
.verdict.harness { background: var(--error-bg); color: var(--error); border-color: var(--error); }
.verdict.unknown { background: var(--warning-bg); color: var(--warning); border-color: var(--warning); }
.facts { color: var(--muted); margin: 0 0 10px; }
.facts b { color: #1f2328; font-weight: 600; }
table.matrix { border-collapse: collapse; margin: 6px 0; }
table.matrix th, table.matrix td { border: 1px solid var(--border); padding: 0; text-align: left; vertical-align: top; }
table.matrix thead th, table.matrix tbody th { padding: 4px 8px; background: #f6f8fa; white-space: nowrap; }
table.matrix a.mx { display: block; padding: 4px 8px; min-width: 9.5em; color: inherit; text-decoration: none; }
table.matrix a.mx:hover { text-decoration: underline; }
.mx .n { font-weight: 700; font-size: 15px; }
table.matrix td { color: #1f2328; font-weight: normal; }
.chip { display: inline-block; padding: 0 5px; margin: 1px 2px 1px 0; border-radius: 8px; font-size: 12px; white-space: nowrap; }
.c-pass { background: var(--pass-bg); color: var(--pass); }
.c-fail { background: var(--fail-bg); color: var(--fail); font-weight: 600; }
.c-known { background: var(--known-bg); color: var(--known); }
.c-warning { background: var(--warning-bg); color: var(--warning); }
.c-skip { background: var(--skip-bg); color: var(--skip); }
.c-blocked { background: var(--skip-bg); color: var(--fail); font-style: italic; }
.c-unsupported { background: var(--eu-bg); color: var(--eu); }
.c-none { color: #8c959f; }
.st-error { background: var(--error-bg); color: var(--error); font-weight: 600; }
ul.problems { margin: 4px 0; padding-left: 20px; color: var(--error); }
details.result { border: 1px solid var(--border); border-left: 6px solid var(--skip); border-radius: 4px; margin: 4px 0; padding: 3px 10px; background: #fff; }
details.result.c-fail { border-left-color: var(--fail); } details.result.c-known { border-left-color: var(--known); }
details.result.c-warning { border-left-color: var(--warning); }
details.result, details.result.c-fail, details.result.c-known, details.result.c-warning { background: #fff; color: inherit; font-weight: normal; }
details.result > summary { cursor: pointer; }
details.result > summary code.id { font-weight: 600; }
details.result .why { color: var(--muted); }
details.group { margin: 6px 0; } details.group > summary { cursor: pointer; font-weight: 600; }
details.group > .members { margin-left: 16px; }
.reason { white-space: pre-wrap; margin: 6px 0; }
table.kv { border-collapse: collapse; margin: 6px 0; }
table.kv th, table.kv td { border: 1px solid var(--border); padding: 2px 8px; text-align: left; vertical-align: top; font-family: var(--mono); font-size: 12.5px; white-space: pre-wrap; }
table.kv thead th { background: #f6f8fa; font-family: inherit; }
table.kv tr.differs td { background: var(--fail-bg); }
.filters { position: sticky; top: 0; z-index: 3; background: #fff; border-bottom: 1px solid var(--border); padding: 6px 0; display: flex; flex-wrap: wrap; gap: 6px 16px; align-items: center; }
.filters fieldset { border: 0; margin: 0; padding: 0; display: flex; flex-wrap: wrap; gap: 4px 8px; }
.filters legend { float: left; margin-right: 6px; color: var(--muted); }
.filters label { white-space: nowrap; cursor: pointer; padding: 1px 6px; border-radius: 8px; }
.filters input[type=search] { width: 20em; padding: 3px 6px; }
.scroll { overflow-x: auto; }
table.cases { border-collapse: separate; border-spacing: 0; margin: 4px 0 8px; }
table.cases th, table.cases td { border-bottom: 1px solid var(--border); padding: 2px 8px; text-align: left; vertical-align: top; }
table.cases thead th { background: #f6f8fa; }
table.cases td.c-pass { background: transparent; }
table.cases th.case { font-weight: normal; white-space: nowrap; }
table.cases th.case code { font-size: 12px; }
table.cases td.cell { text-align: center; white-space: nowrap; min-width: 5.5em; font-size: 12.5px; }
table.cases td.cell a { color: inherit; }
table.cases td.dev { white-space: nowrap; font-family: var(--mono); font-size: 12px; color: var(--muted); }
table.cases td.dim { opacity: 0.3; }
.pictures { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 10px 24px; }
.pictures figure { margin: 0; }
.pictures figcaption { font-weight: 600; margin: 4px 0; }
.legend { display: flex; flex-wrap: wrap; gap: 2px 10px; font-size: 12px; margin: 2px 0; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 2px; vertical-align: -1px; }
svg.chart text { font: 11px system-ui, sans-serif; fill: #1f2328; }
svg.chart .axis { stroke: #8c959f; }
svg.chart .grid { stroke: #eaeef2; }
table.cov { border-collapse: collapse; margin: 8px 0; } table.cov td, table.cov th { border: 1px solid var(--border); padding: 2px 8px; text-align: left; }
`;
