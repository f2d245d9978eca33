// The console's only script (embedded in the binary). Pages work without it; it adds
// interaction only.

// Execution detail: a click (or Enter) on a state in the graph shows that state's input,
// output and error in the side panel, from the JSON the server embedded in the page.
(function () {
  const data = document.getElementById('state-data');
  const panel = document.getElementById('state-panel');
  if (!data || !panel) return;
  let runs = {};
  try { runs = JSON.parse(data.textContent); } catch (e) { return; }
  const $ = (id) => document.getElementById(id);
  const labels = { 'succeeded': 'Succeeded', 'failed': 'Failed', 'caught': 'Caught error',
                   'running': 'In progress', 'not-reached': 'Not reached' };
  // JSON texts from the history, indented when they parse.
  const pretty = (text) => {
    if (text === null || text === undefined) return '–';
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return String(text); }
  };
  const ms = (d) => d < 1000 ? d + ' ms' : (d / 1000).toFixed(3) + ' s';

  function show(name) {
    const run = runs[name] || { status: 'not-reached', entries: 0, failures: 0 };
    document.querySelectorAll('svg.graph .state.selected').forEach((g) => g.classList.remove('selected'));
    document.querySelectorAll('svg.graph .state').forEach((g) => {
      if (g.dataset.state === name) g.classList.add('selected');
    });
    $('panel-name').textContent = name;
    $('panel-hint').hidden = true;
    $('panel-body').hidden = false;
    const status = $('panel-status');
    status.className = 'status ' + run.status;
    status.textContent = labels[run.status] || run.status;
    const timing = [];
    if (run.duration_ms !== null && run.duration_ms !== undefined) timing.push(ms(run.duration_ms));
    if (run.entries > 1) timing.push('entered ' + run.entries + ' times');
    if (run.failures > 0) timing.push(run.failures + ' failed attempt' + (run.failures > 1 ? 's' : ''));
    $('panel-timing').textContent = timing.join(' · ');
    $('panel-input').textContent = run.entries ? pretty(run.input) : 'Not reached';
    $('panel-output').textContent = run.output !== null && run.output !== undefined ? pretty(run.output) : '–';
    const hasError = !!(run.error || run.cause);
    $('panel-error-box').hidden = !hasError;
    $('panel-error').textContent = run.error || '–';
    $('panel-cause').textContent = pretty(run.cause);
    if (history.replaceState) history.replaceState(null, '', '#state=' + encodeURIComponent(name));
  }

  document.querySelectorAll('svg.graph .state[data-state]').forEach((g) => {
    g.addEventListener('click', (ev) => { ev.stopPropagation(); show(g.dataset.state); });
    g.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); show(g.dataset.state); }
    });
  });
  // A link to #state=<name> opens with that state selected.
  const m = location.hash.match(/^#state=(.+)$/);
  if (m) {
    const name = decodeURIComponent(m[1]);
    if (runs[name]) show(name);
  }
})();
