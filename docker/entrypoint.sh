#!/bin/sh
# web | worker | beat | migrate | any other command
set -e
case "$1" in
  web)
    python manage.py migrate --noinput
    exec gunicorn spendctl.wsgi:application --bind 0.0.0.0:8000 --workers "${WEB_WORKERS:-2}" --worker-class sync \
      --timeout 60 --limit-request-line 8190 --access-logfile - ;;
  worker) exec celery -A spendctl worker --loglevel INFO --concurrency "${WORKER_CONCURRENCY:-2}" ;;
  beat) exec celery -A spendctl beat --loglevel INFO --schedule /app/var/celerybeat-schedule ;;
  migrate) exec python manage.py migrate --noinput ;;
  *) exec "$@" ;;
esac
