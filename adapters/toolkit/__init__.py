"""What adapters share beyond the contract (`adapters.base`): typed parsing of handler params
(`params`), instance values as the text Istio's adapters wrote (`text`), and the quota
configuration of memquota and redisquota (`quota`). Optional: an adapter may parse and format
its own way."""
