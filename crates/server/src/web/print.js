// The recovery codes page's Print button (served at /assets/print.js?v=<hash>, the only script
// of the hosted pages; the page's CSP allows scripts from this origin and nothing inline).
// Progressive enhancement: the button is `hidden` in the HTML, so a browser without script
// never shows a dead button, and the browser's own Print command prints the same codes.
(function () {
  'use strict';
  var button = document.getElementById('print');
  if (!button || typeof window.print !== 'function') {
    return;
  }
  button.addEventListener('click', function () {
    window.print();
  });
  button.hidden = false;
})();
