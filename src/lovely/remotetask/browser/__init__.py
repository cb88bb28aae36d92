"""The ZMI views of lovely.remotetask: the Jobs tab, the cron job forms,
the job page and the traversal SERVICE/JOBID."""
