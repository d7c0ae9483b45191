// Live numbers: every element with data-live="key" shows the value of that
// key in /api/overview, fetched every two seconds while the page is open.
// Everything else on the page is rendered by the server; without this
// script the page is the same, only still.
(function () {
  const fields = document.querySelectorAll('[data-live]');
  if (fields.length === 0) return;
  async function refresh() {
    try {
      const response = await fetch('/api/overview', { credentials: 'same-origin' });
      if (!response.ok) return;
      const overview = await response.json();
      for (const el of fields) {
        const value = overview[el.dataset.live];
        if (value !== undefined && value !== null) el.textContent = String(value);
      }
      document.body.dataset.updated = String(overview.updated_ms);
    } catch (e) {
      // The server is gone or restarting: try again at the next tick.
    }
  }
  refresh();
  setInterval(refresh, 2000);
})();
