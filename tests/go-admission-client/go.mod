module kybern.dev/admissionclient

go 1.19
