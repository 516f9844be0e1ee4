module mlrollout.local/pause

go 1.23
