// The report preview: the e-mail's HTML part in a same-origin, script-less iframe, grown to its content's height.
(function () {
  function fit(frame) {
    try {
      var doc = frame.contentDocument;
      if (doc && doc.documentElement) {
        frame.style.height = doc.documentElement.scrollHeight + "px";
      }
    } catch (e) {
      /* not readable: keep the stylesheet's height */
    }
  }
  document.querySelectorAll("iframe.report-frame").forEach(function (frame) {
    frame.addEventListener("load", function () { fit(frame); });
    fit(frame);
  });
})();
